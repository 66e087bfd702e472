"""emoe-report on hand-written records whose expected numbers are worked out by hand."""

import math

import pytest

from emoe_cli.report import tables
from emoe_cli.report.cli import build_report, main
from emoe_cli.report.runs import load_runs
from emoe_cli.report.stats import bootstrap_ci
from emoe_cli.tracking.records import write_json_atomic
from tests.helpers import assert_one_line_error

# (task, method, lr, seed, id, {ood set: score}, seconds per step)
RUNS = [
    ("rte", "dense", 2e-5, 0, 0.60, {"a": 0.40, "b": 0.40}, 0.10),
    ("rte", "dense", 2e-5, 1, 0.62, {"a": 0.40, "b": 0.40}, 0.10),
    ("rte", "dense", 3e-5, 0, 0.64, {"a": 0.50, "b": 0.60}, 0.10),  # dense's best lr: mean .65
    ("rte", "dense", 3e-5, 1, 0.66, {"a": 0.52, "b": 0.58}, 0.10),
    ("rte", "emoe", 2e-5, 0, 0.70, {"a": 0.60, "b": 0.60}, 0.11),   # emoe's best lr: mean .69
    ("rte", "emoe", 2e-5, 1, 0.68, {"a": 0.56, "b": 0.58}, 0.13),
    ("rte", "emoe", 3e-5, 0, 0.66, {"a": 0.90, "b": 0.90}, 0.50),
    ("rte", "emoe", 3e-5, 1, 0.67, {"a": 0.90, "b": 0.90}, 0.50),
    ("cola", "dense", 2e-5, 0, 0.30, {"c": 0.20}, 0.20),  # an incomplete grid: one run
]


def record(task, method, lr, seed, score, ood, step, status="completed"):
    return {"status": status, "task": task, "model": "bert", "method": method, "seed": seed,
            "identity": f"{task}-{method}-{lr}-{seed}",
            "id": {"split": "validation", "metrics": {"accuracy": score}, "score": score},
            "ood": {k: {"metrics": {"accuracy": v}, "score": v} for k, v in ood.items()},
            "config": {"trainer": {"lr": lr}}, "seconds_per_step": step,
            "ffn_params": {"total": 10e6,
                           "active_per_token": 4e6 if method == "emoe" else 10e6},
            **({"conversion_receipt": {"top_k": 16, "kept_share": {"2": 0.6, "4": 0.4},
                                       "hidden_relative_l2": 0.25 + 0.1 * seed}}
               if method == "emoe" else {})}


@pytest.fixture
def runs_dir(tmp_path):
    for i, run in enumerate(RUNS):
        write_json_atomic(tmp_path / "sweep" / str(i) / "results.json", record(*run))
    # a copy of a finished run elsewhere (same identity) and a failed run: neither counts
    write_json_atomic(tmp_path / "copy" / "results.json", record(*RUNS[0]))
    write_json_atomic(tmp_path / "sweep" / "x" / "results.json",
                      record("rte", "emoe", 2e-5, 2, 0.99, {}, 0.1, status="failed"))
    return tmp_path


def cell(table, task, method):
    rows = table[(table["task"] == task) & (table["method"] == method)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_cells_pick_the_best_mean_lr_and_average_its_seeds(runs_dir):
    runs = load_runs([runs_dir / "sweep", runs_dir / "copy"])
    assert len(runs) == len(RUNS)
    table = tables.cells(runs)
    dense, emoe = cell(table, "rte", "dense"), cell(table, "rte", "emoe")
    assert (dense["lr"], dense["lrs"], dense["n"]) == (3e-5, 2, 2)
    assert dense["id_mean"] == pytest.approx(0.65) and dense["id_std"] == pytest.approx(
        math.sqrt(2) / 100)
    assert dense["ood_mean"] == pytest.approx(0.55) and dense["ood_std"] == pytest.approx(0)
    assert emoe["lr"] == 2e-5 and emoe["id_mean"] == pytest.approx(0.69)
    assert emoe["ood_mean"] == pytest.approx((0.60 + 0.57) / 2)
    assert emoe["active_params"] == 4e6 and emoe["step_vs_dense"] == pytest.approx(1.2)
    assert emoe["kept_share"] == pytest.approx(0.5)  # mean over layers, then seeds
    assert emoe["hidden_relative_l2"] == pytest.approx(0.30)
    assert math.isnan(dense["kept_share"]) and math.isnan(dense["hidden_relative_l2"])
    cola = cell(table, "cola", "dense")
    assert cola["n"] == 1 and math.isnan(cola["id_std"])


def test_summary_averages_tasks_and_keeps_missing_cells_empty(runs_dir):
    summary = tables.summary(tables.cells(load_runs([runs_dir])))
    dense = summary[summary["method"] == "dense"].iloc[0]
    emoe = summary[summary["method"] == "emoe"].iloc[0]
    assert dense["id_avg"] == pytest.approx((0.65 + 0.30) / 2) and dense["tasks"] == 2
    assert dense["ood_avg"] == pytest.approx((0.55 + 0.20) / 2)
    assert emoe["tasks"] == 1 and math.isnan(emoe["cola"])


def test_paired_differences_use_each_sides_best_lr(runs_dir):
    paired = tables.paired(load_runs([runs_dir]))
    assert len(paired) == 1  # cola has no emoe cell to pair with
    row = paired.iloc[0]
    # ID: .70-.64 = .06 and .68-.66 = .02; OOD avg: .60-.55 = .05 and .57-.55 = .02
    assert row["pairs"] == 2 and row["id_diff"] == pytest.approx(0.04)
    assert (row["id_low"], row["id_high"]) == pytest.approx((0.02, 0.06))
    assert row["ood_avg_diff"] == pytest.approx(0.035)
    assert (row["ood_avg_low"], row["ood_avg_high"]) == pytest.approx((0.02, 0.05))


def test_paired_intervals_resample_seed_pairs_not_each_side_apart(tmp_path):
    """Scores that spread 20 points across seeds, differences of 1-2 points per seed: the
    paired interval spans the differences; resampling the two sides apart (or pairing the
    wrong seeds) would span tens of points."""
    for seed, (dense, emoe) in enumerate([(0.50, 0.52), (0.60, 0.61), (0.70, 0.71)]):
        for method, score in [("dense", dense), ("emoe", emoe)]:
            write_json_atomic(tmp_path / f"{method}{seed}" / "results.json",
                              record("rte", method, 2e-5, seed, score, {"a": score}, 0.1))
    row = tables.paired(load_runs([tmp_path]), resamples=2000).iloc[0]
    assert row["pairs"] == 3 and row["id_diff"] == pytest.approx(0.04 / 3)
    # P(three draws of .01) = 8/27 > 2.5 %, P(three of .02) = 1/27 > 2.5 %
    assert (row["id_low"], row["id_high"]) == pytest.approx((0.01, 0.02))
    assert (row["ood_avg_low"], row["ood_avg_high"]) == pytest.approx((0.01, 0.02))


def test_bootstrap_interval_edge_cases():
    assert all(math.isnan(v) for v in bootstrap_ci([0.1]))
    assert bootstrap_ci([0.03, 0.03, 0.03]) == (0.03, 0.03)
    low, high = bootstrap_ci([0.0] * 10 + [1.0] * 10)  # mean 0.5, se ≈ 0.11
    assert 0.25 < low < 0.35 and 0.65 < high < 0.75


def test_report_writes_markdown_csv_latex_and_plots(runs_dir, tmp_path):
    out = tmp_path / "report"
    markdown = build_report([str(runs_dir / "sweep")], out, resamples=2000)
    assert "65.00 ± 1.41 (n=2)" in markdown and "69.00 ± 1.41 (n=2)" in markdown
    assert "30.00 ± – (n=1)" in markdown
    assert "+4.00 [2.00, 6.00]" in markdown and "+3.50 [2.00, 5.00]" in markdown
    assert "4.00M" in markdown and "1.20×" in markdown
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[-3:-1]]
            for line in markdown.splitlines()[:6] if line.startswith("| ")}
    assert rows["model · method"] == ["kept activation share", "hidden rel. L2 vs dense"]
    assert rows["bert · emoe"] == ["0.50", "0.30"] and rows["bert · dense"] == ["–", "–"]
    for name in ["report.md", "runs.csv", "cells.csv", "summary.csv", "paired.csv",
                 "summary.tex", "cells.tex", "paired.tex"]:
        assert (out / name).stat().st_size > 0, name
    assert r"65.00 $\pm$ 1.41" in (out / "summary.tex").read_text()
    assert "ood_a" in (out / "runs.csv").read_text().splitlines()[0]
    assert (out / "methods_bert_dev.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_reports_a_bad_folder_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nope")])
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "nope is not a directory", "emoe-report")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "no completed results.json", "emoe-report")


def test_heldout_selection_picks_the_rate_on_the_heldout_score(tmp_path):
    # dev favours 3e-5, the held-out split favours 2e-5: the clean protocol must not peek
    for seed in (0, 1):
        for lr, dev, heldout in [(2e-5, 0.60, 0.90), (3e-5, 0.70, 0.80)]:
            run = record("rte", "emoe", lr, seed, dev, {"a": 0.5}, 0.1)
            run.update(selection="heldout", selection_score=heldout,
                       identity=f"h-{lr}-{seed}")
            write_json_atomic(tmp_path / f"{lr}-{seed}" / "results.json", run)
    row = cell(tables.cells(load_runs([tmp_path])), "rte", "emoe")
    assert (row["selection"], row["lr"], row["id_mean"]) == ("heldout", 2e-5, pytest.approx(0.6))


def test_friedman_rank_averages_places_over_complete_ood_sets_with_shared_ties(tmp_path):
    """Three methods on one task's OOD sets x, y, z (one seed, one rate):
    x: dense .5, emoe .7, gmoe .6 -> places 3, 1, 2
    y: dense .8, emoe .8, gmoe .4 -> dense and emoe tie for 1-2 (1.5 each), gmoe 3
    z: dense .3, emoe .9 (gmoe missing) -> not a complete block: left out.
    Mean places: dense (3 + 1.5) / 2 = 2.25, emoe (1 + 1.5) / 2 = 1.25, gmoe (2 + 3) / 2 = 2.5."""
    scores = {"dense": {"x": .5, "y": .8, "z": .3}, "emoe": {"x": .7, "y": .8, "z": .9},
              "gmoe": {"x": .6, "y": .4}}
    for method, ood in scores.items():
        write_json_atomic(tmp_path / method / "results.json",
                          record("rte", method, 2e-5, 0, 0.6, ood, 0.1))
    ranks = tables.ood_ranks(load_runs([tmp_path])).set_index("method")
    assert ranks["ood_rank"].to_dict() == {"dense": 2.25, "emoe": 1.25, "gmoe": 2.5}
    assert set(ranks["ood_sets"]) == {2}
    markdown = build_report([str(tmp_path)], tmp_path / "report", resamples=100)
    assert "OOD rank" in markdown and "1.25" in markdown


def test_ingredient_arms_are_paired_by_seed_against_dense_and_official_emoe(tmp_path):
    """Arms (seed: ID, OOD): dense {0: .60/.40, 1: .62/.42}; official {0: .70/.50,
    1: .66/.46}; no_token_dropping {0: .68/.50, 1: .70/.52, 2: .90/.90 (no twin)}.
    no_token_dropping − official: ID (-.02 + .04) / 2 = +.01, OOD (0 + .06) / 2 = +.03;
    − dense: ID (.08 + .08) / 2 = .08; official − dense: ID (.10 + .04) / 2 = .07."""
    arms = {"dense": {0: (.60, .40), 1: (.62, .42)}, "official": {0: (.70, .50), 1: (.66, .46)},
            "no_token_dropping": {0: (.68, .50), 1: (.70, .52), 2: (.90, .90)}}
    for arm, seeds in arms.items():
        for seed, (score, ood) in seeds.items():
            run = record("sst2", "dense" if arm == "dense" else "emoe", 2e-5, seed, score,
                         {"imdb": ood}, 0.1)
            run["config"]["ablation"] = {"ingredient": arm}
            run["identity"] = f"{arm}-{seed}"
            write_json_atomic(tmp_path / arm / str(seed) / "results.json", run)
    table = tables.ingredients(load_runs([tmp_path]), resamples=200)
    got = {(r.ingredient, r.reference): (r.pairs, round(r.id_diff, 6), round(r.ood_avg_diff, 6))
           for r in table.itertuples()}
    assert got == {("no_token_dropping", "official"): (2, 0.01, 0.03),
                   ("no_token_dropping", "dense"): (2, 0.08, 0.10),
                   ("official", "dense"): (2, 0.07, 0.07)}
    markdown = build_report([str(tmp_path)], tmp_path / "report", resamples=200)
    assert "What each ingredient is worth" in markdown and "no_token_dropping" in markdown
    assert (tmp_path / "report" / "ingredients.csv").is_file()
