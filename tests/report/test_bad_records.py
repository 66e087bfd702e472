"""One bad results.json never blocks a report: it is skipped with one line naming the file;
a legacy bare NaN reads as a missing value."""

import pytest

from emoe_cli.report.cli import main
from emoe_cli.report.runs import load_runs
from emoe_cli.tracking.records import write_json_atomic


def good(folder, seed=0, score=0.6):
    write_json_atomic(folder / "results.json", {
        "status": "completed", "task": "rte", "model": "bert", "method": "emoe", "seed": seed,
        "identity": f"i{seed}", "config": {"trainer": {"lr": 2e-5}}, "id": {"score": score},
        "ood": {"x": {"score": 0.5}, "y": {"score": 0.7}}})


LEGACY_NAN = """{"status": "completed", "task": "rte", "model": "bert", "method": "emoe",
 "seed": 1, "identity": "i1", "config": {"trainer": {"lr": 2e-5}},
 "id": {"score": NaN, "metrics": {"mse": Infinity}}, "ood": {}}"""
LEGACY_OOD_NAN = LEGACY_NAN.replace('"seed": 1', '"seed": 2').replace('"i1"', '"i2"').replace(
    "NaN", "0.7").replace('"ood": {}', '"ood": {"x": {"score": -Infinity}, "y": {"score": 0.5}}')


@pytest.mark.parametrize("text, why", [
    ("[1, 2, 3]", "not a JSON object"), ("42", "not a JSON object"),
    ('{"status": "completed", "task": "rte"', "not valid JSON"),
    ('{"status": "completed", "task": "rte"}', "model"),  # a key a report needs is missing
])
def test_a_bad_record_is_skipped_with_one_line_naming_it(tmp_path, caplog, text, why):
    good(tmp_path / "ok")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text(text)
    runs = load_runs([tmp_path])
    assert list(runs["seed"]) == [0]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "bad/results.json" in warnings[0] and why in warnings[0]


def test_a_legacy_bare_nan_is_missing_and_the_report_still_runs(tmp_path, caplog, capsys):
    good(tmp_path / "ok")
    for name, text in [("nan", LEGACY_NAN), ("oodnan", LEGACY_OOD_NAN)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(text)
    runs = load_runs([tmp_path])
    assert sorted(runs["seed"]) == [0, 2]  # no ID score: nothing to place; OOD NaN: missing
    assert runs.set_index("seed").loc[2, "ood_avg"] != runs.set_index("seed").loc[2, "ood_avg"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("nan/results.json" in w and "NaN" in w for w in warnings)
    main([str(tmp_path), "--out", str(tmp_path / "report"), "--resamples", "100"])
    assert "(n=2)" in capsys.readouterr().out
