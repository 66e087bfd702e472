"""`logger=`: csv (the default), tensorboard, wandb (offline), none, several at once, and a
missing tracker package as one line; multirun jobs grouped by their sweep."""

import csv
import sys
import types

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from emoe_cli.cli.train import run
from emoe_cli.config.checks import check_group_choices
from emoe_cli.errors import UserError
from emoe_cli.tracking import trackers as tracking
from tests.helpers import assert_one_line_error, compose_config

TAGS = {"task": "rte", "method": "emoe", "model": "bert"}


def hydra_cfg(mode, output_dir, experiment=None, num=0):
    return OmegaConf.create({"mode": mode, "job": {"num": num},
                             "runtime": {"output_dir": str(output_dir),
                                         "choices": {"experiment": experiment}}})


def start(logger, output_dir, config=None):
    return tracking.start_tracker(compose_config([f"logger={logger}"]).logger, config or {},
                                  "rte-bert-emoe-s0", TAGS, str(output_dir))


def rows(path):
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_multirun_jobs_are_grouped_by_their_sweep_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = tmp_path / "outputs" / "multirun" / "2026-01-02" / "03-04-05" / "7"
    assert tracking.sweep_group(hydra_cfg(RunMode.MULTIRUN, job)) == (
        "outputs/multirun/2026-01-02/03-04-05")
    elsewhere = tmp_path.parent / "scratch" / "sweep" / "0"
    assert tracking.sweep_group(hydra_cfg(RunMode.MULTIRUN, elsewhere)) == str(
        elsewhere.parent.resolve())
    assert tracking.sweep_group(hydra_cfg(RunMode.RUN, job)) is None
    assert tracking.sweep_group(None) is None


def test_the_logger_group_composes_one_several_or_none():
    assert set(compose_config().logger) == {"csv"}  # the default
    assert set(compose_config(["logger=wandb"]).logger) == {"wandb"}
    assert set(compose_config(["logger=[csv,wandb]"]).logger) == {"csv", "wandb"}
    assert set(compose_config(["logger=none"]).logger) == set()
    assert set(compose_config(["debug=fast"]).logger) == set()
    assert check_group_choices(["logger=[csv,wandb]"]) is None
    assert check_group_choices(["logger=[csv,wandbb]"]).startswith("logger=wandbb is unknown")


def test_csv_writes_one_row_per_step_and_keeps_every_row_on_disk(tmp_path):
    tracker = start("csv", tmp_path)
    path = tmp_path / "metrics.csv"
    tracker.log({"train/loss": 0.5, "train/lr": 0.1}, step=1)
    assert rows(path) == [{"step": "1", "train/loss": "0.5", "train/lr": "0.1"}]
    tracker.log({"train/loss": 0.25, "train/lr": 0.05}, step=2)
    tracker.log({"id/score": 0.75, "epoch": 1}, step=2)  # same step: the same row
    assert rows(path) == [  # on disk before finish: a crash here loses nothing
        {"step": "1", "train/loss": "0.5", "train/lr": "0.1", "id/score": "", "epoch": ""},
        {"step": "2", "train/loss": "0.25", "train/lr": "0.05", "id/score": "0.75",
         "epoch": "1"}]
    tracker.log({"train/loss": 0.125, "train/lr": 0.0, "train/tokens": 96}, step=3)
    assert [row["train/tokens"] for row in rows(path)] == ["", "", "96"]  # a new column
    tracker.summary({"id/score": 0.8, "ood/imdb/score": 0.7})
    tracker.finish()
    last = rows(path)[-1]
    assert (last["step"], last["train/loss"], last["final/id/score"],
            last["final/ood/imdb/score"]) == ("3", "0.125", "0.8", "0.7")
    assert len(rows(path)) == 3 and not list(tmp_path.glob(".*tmp"))


def test_csv_continues_a_requeued_run_and_replaces_steps_logged_again(tmp_path):
    first = start("csv", tmp_path)
    for step in (1, 2, 3):
        first.log({"train/loss": float(step)}, step=step)
    again = start("csv", tmp_path)  # resumed from a checkpoint taken at step 1
    again.log({"train/loss": 20.0}, step=2)
    assert [(r["step"], r["train/loss"]) for r in rows(tmp_path / "metrics.csv")] == [
        ("1", "1.0"), ("2", "20.0")]


def test_tensorboard_writes_events_per_run_and_per_job_under_the_sweep(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = start("[csv,tensorboard]", tmp_path / "run")
    for step in (1, 2):
        tracker.log({"train/loss": 1.0 / step}, step=step)
    tracker.summary({"id/score": 0.9})
    tracker.finish()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "rte-bert-emoe-s0"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 1.0), (2, 0.5)]
    assert [e.value for e in events.Scalars("final/id/score")] == [pytest.approx(0.9)]
    assert (tmp_path / "run" / "metrics.csv").is_file()  # both trackers at once

    monkeypatch.setattr(tracking, "current_hydra", lambda: hydra_cfg(
        RunMode.MULTIRUN, tmp_path / "sweep" / "3", num=3))
    job = start("tensorboard", tmp_path / "sweep" / "3")
    job.log({"train/loss": 1.0}, step=1)
    job.finish()
    assert list((tmp_path / "sweep" / "tensorboard" / "3-rte-bert-emoe-s0").glob("events.*"))


def test_none_starts_nothing(tmp_path):
    assert type(start("none", tmp_path)) is tracking.NullTracker
    assert not list(tmp_path.iterdir())


def test_wandb_run_gets_group_and_tags(tmp_path, monkeypatch):
    calls = {}
    fake = types.SimpleNamespace(init=lambda **kwargs: calls.update(kwargs))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking, "current_hydra", lambda: hydra_cfg(
        RunMode.MULTIRUN, tmp_path / "sweeps" / "a" / "3", "glue_bert_base"))
    start("wandb", "out").started()
    assert calls["group"] == "sweeps/a" and calls["mode"] == "offline"
    assert calls["project"] == "emoe" and calls["name"] == "rte-bert-emoe-s0"
    assert calls["tags"] == ["rte", "emoe", "bert", "experiment:glue_bert_base"]
    logger = compose_config(["logger=wandb", "logger.wandb.group=mine",
                             "logger.wandb.tags=[extra]"]).logger
    tracking.start_tracker(logger, {}, "n", TAGS, "out").started()
    assert calls["group"] == "mine" and calls["tags"][-1] == "extra"  # an explicit group wins


def test_wandb_offline_for_real(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = start("wandb", tmp_path, {"trainer": {"lr": 0.1}})
    tracker.log({"train/loss": 0.5}, step=1)
    tracker.summary({"id/score": 0.9})
    run_ = tracker.trackers[0].run
    assert run_.summary["id/score"] == 0.9 and run_.config["trainer"]["lr"] == 0.1
    assert list(run_.tags) == ["rte", "emoe", "bert"]
    tracker.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_mlflow_logs_a_run_with_its_tags(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 prefers a database
    tracker = start("mlflow", tmp_path, {"trainer": {"lr": 0.1}})
    tracker.log({"train/loss": 0.5}, step=1)
    tracker.finish()
    found = mlflow.search_runs(experiment_names=["emoe"], output_format="list")
    assert found[0].data.tags["method"] == "emoe"
    assert found[0].data.params["trainer.lr"] == "0.1"
    assert found[0].data.metrics["train/loss"] == 0.5


@pytest.mark.parametrize("logger,package", [("wandb", "wandb"), ("[csv,tensorboard]",
                                                                  "tensorboard")])
def test_a_missing_tracker_package_is_one_line_before_training(logger, package, tmp_path,
                                                               monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    with pytest.raises(UserError):
        start(logger, tmp_path)
    monkeypatch.setattr("emoe_cli.cli.train.run_experiment",
                        lambda *a, **k: pytest.fail("trained without its logger"))
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([f"logger={logger}", f"sweep.index_dir={tmp_path / 'i'}",
                            "trainer.checkpoint=false"]), tmp_path / "run")
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          f"logger={package} needs the {package} package; "
                          f"pip install 'emoe-cli[{package}]'")
