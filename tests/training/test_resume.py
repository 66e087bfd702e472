"""Resumed runs end exactly like uninterrupted ones; SIGTERM and NaN losses stop cleanly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emoe_cli.cli import train
from emoe_cli.cli.train import run
from emoe_cli.tracking.trackers import NullTracker
from tests.helpers import compose_config


@pytest.fixture
def small(minilm2_dir, shared_data, tmp_path):
    """Two real MiniLM layers on 48 SST-2 sentences: 3 epochs of 6 steps in a few seconds."""
    return ["experiment=quickstart", "logger=none", f"model.name_or_path={minilm2_dir}",
            "moe.layers=[0,1]", "moe.num_experts=16", "moe.top_k=4", f"data.root={shared_data}",
            "data.max_train_samples=48", "data.max_eval_samples=16", "trainer.batch_size=8",
            "trainer.epochs=3", "trainer.early_stop_patience=0",
            f"trainer.checkpoint_dir={tmp_path / 'checkpoints'}"]


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def outcome(record: dict) -> tuple:
    """What must not depend on interruptions: every metric and every epoch's training loss."""
    return (record["id"], record["ood"], record["best_epoch"],
            [(e["epoch"], e["step"], e["train_loss"], e["metrics"]) for e in record["epochs"]])


@pytest.fixture
def uninterrupted(small, tmp_path):
    folder = tmp_path / "uninterrupted"
    run(compose_config([*small, f"trainer.checkpoint_dir={tmp_path / 'other'}"]), folder)
    return results(folder)


class StepLog(NullTracker):
    """The optimiser steps a run trains (and logs), in order."""

    def __init__(self) -> None:
        self.steps = []

    def log(self, values, step=None):
        if "train/loss" in values:
            self.steps.append(step)


class SignalAtStep(NullTracker):
    """Sends a real signal to this process when training reaches `step`."""

    def __init__(self, step: int, number: int = signal.SIGTERM) -> None:
        self.step, self.number = step, number

    def log(self, values, step=None):
        if step == self.step and "train/loss" in values:
            os.kill(os.getpid(), self.number)


@pytest.mark.slow
def test_sigterm_saves_and_the_same_command_resumes_exactly(small, uninterrupted, tmp_path,
                                                            monkeypatch, capsys):
    monkeypatch.setattr(train, "start_tracker", lambda *a, **k: SignalAtStep(8))
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config(small), tmp_path / "first")
    assert exit_info.value.code == 128 + signal.SIGTERM
    first = results(tmp_path / "first")
    assert first["status"] == "interrupted"
    assert "SIGTERM: stopped in epoch 2 after step 8" in first["error"]
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert list((tmp_path / "checkpoints").glob("*/last/complete"))

    steps = StepLog()
    monkeypatch.setattr(train, "start_tracker", lambda *a, **k: steps)
    run(compose_config(small), tmp_path / "second")
    second = results(tmp_path / "second")
    assert second["status"] == "completed" and "resumed_from" in second
    assert steps.steps == list(range(9, 19))  # it trained only what was left
    assert outcome(second) == outcome(uninterrupted)
    assert not list((tmp_path / "checkpoints").iterdir())  # removed once completed


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_epoch(small, uninterrupted, tmp_path, monkeypatch):
    """SIGKILL leaves no chance to save: the run continues from the last epoch checkpoint."""
    command = [sys.executable, "-m", "emoe_cli.cli.train", *small,
               f"hydra.run.dir={tmp_path / 'killed'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "checkpoints"
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("*/last/complete")) and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    process.kill()
    process.wait()
    assert not (tmp_path / "killed" / "results.json").exists(), "run ended before the kill"

    steps = StepLog()
    monkeypatch.setattr(train, "start_tracker", lambda *a, **k: steps)
    run(compose_config(small), tmp_path / "resumed")
    resumed = results(tmp_path / "resumed")
    assert resumed["status"] == "completed" and "resumed_from" in resumed
    assert steps.steps[0] in (7, 13) and steps.steps[-1] == 18  # after epoch 1 or 2
    assert outcome(resumed) == outcome(uninterrupted)


@pytest.mark.slow
def test_same_seed_same_results(small, uninterrupted, tmp_path):
    run(compose_config([*small, "trainer.checkpoint=false"]), tmp_path / "again")
    assert outcome(results(tmp_path / "again")) == outcome(uninterrupted)


@pytest.mark.slow
def test_a_nan_loss_fails_the_run_with_the_step_and_keeps_the_checkpoint(small, tmp_path,
                                                                         capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*small, "trainer.lr=1e30", "trainer.max_grad_norm=0",
                            "trainer.keep_checkpoint=true"]), tmp_path / "nan")
    assert exit_info.value.code == 1
    record = results(tmp_path / "nan")
    assert record["status"] == "failed" and record["error"].startswith("loss is nan at step")
    err = capsys.readouterr().err
    assert "Traceback" not in err and "emoe-run: run failed: loss is nan" in err


@pytest.mark.slow
def test_the_launchers_requeue_signal_checkpoints_then_reaches_the_launcher(small, tmp_path,
                                                                            monkeypatch):
    """Under submitit, SIGUSR2 means "about to be preempted": save, record, then requeue."""
    calls = []

    def launcher_requeue(number, frame):  # stands in for submitit's checkpoint_and_try_requeue
        calls.append(json.loads((tmp_path / "run" / "results.json").read_text())["status"])

    previous = signal.signal(signal.SIGUSR2, launcher_requeue)
    try:
        monkeypatch.setattr(train, "start_tracker",
                            lambda *a, **k: SignalAtStep(3, signal.SIGUSR2))
        with pytest.raises(SystemExit) as exit_info:
            run(compose_config([*small, "trainer.epochs=1"]), tmp_path / "run")
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert exit_info.value.code == 128 + signal.SIGUSR2
    assert calls == ["interrupted"]  # the record was written before the launcher took over
    assert list((tmp_path / "checkpoints").glob("*/last/complete"))
