"""Records survive concurrent writers, parallel runs never share an output folder, and a
run's typed result becomes exactly the contract's record."""

import json
import multiprocessing
import subprocess
import sys

from omegaconf import OmegaConf

import emoe_cli.cli.train  # noqa: F401  (registers the emoe_uid resolver)
from emoe_cli.tracking.records import (
    RunRecord,
    RunResult,
    record_result,
    save_record,
    write_json_atomic,
)


def _write_many(path: str, writer: int, times: int) -> None:
    for number in range(times):
        write_json_atomic(path, {"writer": writer, "number": number, "pad": "x" * 20_000})


def test_concurrent_writers_never_leave_a_torn_record(tmp_path):
    path = tmp_path / "results.json"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(path), w, 150)) for w in (1, 2)]
    for process in writers:
        process.start()
    seen = set()
    while any(p.is_alive() for p in writers):
        if path.exists():
            seen.add(json.loads(path.read_text())["writer"])  # always whole JSON
    for process in writers:
        process.join()
        assert process.exitcode == 0
    assert json.loads(path.read_text())["number"] == 149
    assert not list(tmp_path.glob(".results.json.*"))  # no temp files left behind
    assert seen <= {1, 2}


def test_two_launches_in_the_same_second_get_different_folders():
    code = ("import emoe_cli.cli.train; from omegaconf import OmegaConf; "
            "c = OmegaConf.create({'run': 'x_${emoe_uid:}', 'sweep': 'y_${emoe_uid:}'}); "
            "print(c.run[2:], c.sweep[2:])")
    first, second = (subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True).stdout.split() for _ in range(2))
    assert first[0] == first[1] and second[0] == second[1]  # one launch agrees with itself
    assert first[0] != second[0]


def test_the_folder_suffix_is_stable_within_a_config():
    config = OmegaConf.create({"a": "${emoe_uid:}", "b": "${emoe_uid:}"})
    assert config.a == config.b and len(config.a) == 4


def test_only_the_main_process_writes_the_record(tmp_path, monkeypatch):
    record = RunRecord(task="t", model="m", method="dense", seed=0, config={})
    monkeypatch.setenv("RANK", "1")
    assert not save_record(record, tmp_path / "a").exists()
    monkeypatch.setenv("RANK", "0")
    assert save_record(record, tmp_path / "a").exists()


def strict_load(path):
    """json.loads that refuses NaN/Infinity, which are not JSON."""
    def refuse(constant):
        raise ValueError(f"bare {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null_and_named(tmp_path):
    import numpy as np

    record = RunRecord(task="t", model="m", method="dense", seed=0, config={"x": 1.5},
                       status="completed")
    record.id = {"split": "validation", "metrics": {"mse": float("nan"), "pearson": 0.5},
                 "score": float("nan")}
    record.ood = {"a": {"score": float("inf"), "metrics": {"acc": np.float32(0.25)}}}
    record.epochs = [{"epoch": 1, "loss": float("-inf")}]
    written = strict_load(save_record(record, tmp_path))
    assert written["id"]["score"] is None and written["id"]["metrics"]["mse"] is None
    assert written["id"]["metrics"]["pearson"] == 0.5
    assert written["ood"]["a"]["score"] is None and written["ood"]["a"]["metrics"]["acc"] == 0.25
    assert written["epochs"][0]["loss"] is None
    assert written["non_finite"] == ["id.metrics.mse", "id.score", "ood.a.score",
                                     "epochs.0.loss"]


def test_every_json_the_runner_writes_is_strict(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"v": [1.0, float("nan")], "n": {"k": float("inf")}})
    assert strict_load(tmp_path / "a.json") == {"v": [1.0, None], "n": {"k": None}}
    record = RunRecord(task="t", model="m", method="dense", seed=0, config={})
    assert "non_finite" not in strict_load(save_record(record, tmp_path))


CONTRACT_KEYS = ["task", "model", "method", "seed", "config", "status", "id", "ood", "epochs",
                 "timing", "best_epoch"]


def _record() -> RunRecord:
    return RunRecord(task="sst2", model="minilm", method="emoe", seed=0, config={"seed": 0})


def test_an_empty_result_makes_exactly_the_contract_record():
    record = _record()
    record_result(record, RunResult())
    assert list(record.to_dict()) == CONTRACT_KEYS
    assert record.to_dict()["timing"] == {"convert": 0.0, "train": 0.0, "eval": 0.0}


def test_a_results_extras_are_top_level_keys_in_order_and_none_is_kept():
    """Set extras follow the record's own keys (and those already in `extra`) in the
    result's field order; the workload's notes add their own keys; an extra set to None (an
    uncountable `ffn_params`) is written as null, an unset one is left out."""
    record = _record()
    record.extra["identity"] = "abc"
    result = RunResult(id={"score": 0.5}, epochs=[{"epoch": 1}], best_epoch=1,
                       timing={"convert": 1.0, "train": 2.0, "eval": 3.0})
    result.weights, result.task_notes = "/w", {"domains": {"test_env": "A"}}
    result.ffn_params, result.selection, result.selection_score = None, "dev", 0.5
    record_result(record, result)
    written = record.to_dict()
    assert list(written) == [*CONTRACT_KEYS, "identity", "weights", "domains", "ffn_params",
                             "selection", "selection_score"]
    assert (written["id"], written["epochs"], written["best_epoch"], written["timing"],
            written["weights"], written["domains"], written["ffn_params"]) == (
        {"score": 0.5}, [{"epoch": 1}], 1, {"convert": 1.0, "train": 2.0, "eval": 3.0}, "/w",
        {"test_env": "A"}, None)
