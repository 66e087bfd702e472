"""Multiruns on the real MiniLM and SST-2 data, kept tiny: isolation, skip-on-relaunch, tally."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emoe_cli.cli import train
from emoe_cli.cli.train import run
from emoe_cli.experiment import recipe
from emoe_cli.workloads import build_workload
from tests.helpers import compose_config

ROOT = Path(__file__).resolve().parents[2]
TINY = ["experiment=quickstart", "debug=fast", "data.max_train_samples=16",
        "data.max_eval_samples=8", "task.ood=[yelp]"]
JOBS = ("0_emoe", "1_emoe")  # hydra.sweep.subdir: the job number, then its method


def launch(tmp_path, name, *overrides):
    command = [sys.executable, "-m", "emoe_cli.cli.train", "--multirun", *TINY, *overrides,
               f"hydra.sweep.dir={tmp_path / name}", f"sweep.index_dir={tmp_path / 'index'}"]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def outcome(job_dir):
    if (job_dir / "skipped.json").exists():
        return "skipped"
    return json.loads((job_dir / "results.json").read_text())["status"]


@pytest.mark.slow
def test_relaunch_skips_completed_reruns_failed_and_tallies(shared_data, minilm_path, tmp_path):
    # job 1 fails (no GPU here); job 0 must still run, and the tally must say so
    first = launch(tmp_path, "first", f"data.root={shared_data}", "trainer.device=auto,cuda")
    assert first.returncode == 1, first.stderr[-2000:]
    assert "sweep tally: 1 completed, 1 failed, 0 skipped" in first.stdout
    assert [outcome(tmp_path / "first" / n) for n in JOBS] == ["completed", "failed"]

    # the data moved: same identity, so job 0 is skipped; the failed job runs again
    moved = tmp_path / "data_link"
    moved.symlink_to(shared_data)
    second = launch(tmp_path, "second", f"data.root={moved}", "trainer.device=auto,cuda")
    assert "sweep tally: 0 completed, 1 failed, 1 skipped" in second.stdout
    assert [outcome(tmp_path / "second" / n) for n in JOBS] == ["skipped", "failed"]
    skipped = json.loads((tmp_path / "second" / "0_emoe" / "skipped.json").read_text())
    assert skipped["completed_at"] == str(tmp_path / "first" / "0_emoe" / "results.json")
    assert json.loads((tmp_path / "second" / "tally.json").read_text()) == {
        "completed": 0, "failed": 1, "skipped": 1}


def test_a_crash_in_a_multirun_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("diverged")

    monkeypatch.setattr(train, "run_experiment", boom)
    cfg = compose_config([*TINY, "logger=none", f"sweep.index_dir={tmp_path}/i"])
    assert run(cfg, tmp_path / "job", multirun=True) is None  # returns instead of raising
    record = json.loads((tmp_path / "job" / "results.json").read_text())
    assert record["status"] == "failed" and record["error"] == "RuntimeError: diverged"
    assert len(record["identity"]) == 16
    assert "the sweep goes on" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()  # failures are never indexed as completed


def test_single_runs_never_skip(shared_data, minilm_path, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train, "run_experiment", lambda cfg, record, *rest: calls.append(1))
    cfg = compose_config([*TINY, "logger=none", f"sweep.index_dir={tmp_path}/i"])
    run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b")
    assert len(calls) == 2 and (tmp_path / "i").is_dir()
    run(cfg, tmp_path / "c", multirun=True)
    assert len(calls) == 2 and (tmp_path / "c" / "skipped.json").exists()


@pytest.mark.slow
def test_heldout_selection_reports_dev_scores_of_the_epoch_chosen_on_train(
        shared_data, minilm_path, tmp_path, monkeypatch):
    scored = []  # (what for, examples) of every evaluation

    def recording(cfg, weights):
        workload = build_workload(cfg, weights)
        evaluate = workload.evaluate

        def evaluate_and_record(model, loader, accelerator, desc, *args):
            scored.append((desc, len(loader.dataset)))
            return evaluate(model, loader, accelerator, desc, *args)

        workload.evaluate = evaluate_and_record
        return workload

    monkeypatch.setattr(recipe, "build_workload", recording)
    cfg = compose_config([*TINY, f"data.root={shared_data}", "data.selection=heldout",
                          "data.selection_fraction=0.25", "trainer.epochs=2",
                          f"sweep.index_dir={tmp_path}/i"])
    run(cfg, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["selection"] == "heldout" and record["selection_fraction"] == 0.25
    assert record["id"]["split"] == "validation" and record["id"]["num_examples"] == 8
    # the epochs are scored on the held-out quarter of the 16 training examples, and the
    # dev set (8 examples) is scored once, after the epoch was chosen
    assert scored[:3] == [("select eval", 4), ("select eval", 4), ("ID eval", 8)]
    epoch = record["epochs"][record["best_epoch"] - 1]
    assert record["selection_score"] == epoch["score"]
