"""Experiment tracking through accelerate's trackers: csv (the default), tensorboard, mlflow,
wandb, several at once, or none.

`emoe-run` asks for the trackers before the run builds its Accelerator: they are checked at
once (an unknown name or a missing package is one line) and started at their first use, on
the main process only; the loop and the runner log through one facade.
A multirun's jobs are grouped where the tracker can: a wandb group and an mlflow `sweep` tag
named after the sweep's folder, a tensorboard folder per job under the sweep's folder.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hydra.types import RunMode
from omegaconf import DictConfig

from emoe_cli.errors import UserError

# logger name -> the package it needs (csv needs none); `pip install 'emoe-cli[<name>]'`
PACKAGES = {"csv": None, "tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def sweep_group(hydra_cfg: DictConfig | None) -> str | None:
    """The sweep folder (relative to the working directory when inside it), in a multirun."""
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(hydra_cfg.runtime.output_dir).parent.resolve()
    try:
        return str(sweep_dir.relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return str(sweep_dir)


def experiment_tags(hydra_cfg: DictConfig | None) -> list[str]:
    choice = hydra_cfg.runtime.choices.get("experiment") if hydra_cfg is not None else None
    return [f"experiment:{choice}"] if choice else []


def current_hydra() -> DictConfig | None:
    """The running job's Hydra config, or None outside a Hydra app (tests, the Python API)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def check_loggers(logger_cfg: DictConfig) -> None:
    """Refuse an unknown logger, or one whose package is not installed, before any work."""
    for name in logger_cfg or {}:
        if name not in PACKAGES:
            raise UserError(f"logger={name} is unknown; valid: none, "
                            + ", ".join(PACKAGES) + " or a list of them, e.g. logger=[csv,wandb]")
        package = PACKAGES[name]
        if package is not None and not _installed(package):
            raise UserError(f"logger={name} needs the {package} package; "
                            f"pip install 'emoe-cli[{name}]'")


def _installed(package: str) -> bool:
    if package in sys.modules:  # imported already (or blocked: None)
        return sys.modules[package] is not None
    return importlib.util.find_spec(package) is not None


class NullTracker:
    """`logger=none`: tracking switched off (and the interface the loop logs through)."""

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class Trackers(NullTracker):
    """accelerate trackers, logged to together.

    They start at the first value logged: accelerate's trackers need the process state that
    the run's Accelerator sets up (and which must not be set up before it, or its `cpu`
    choice would be lost). The final scores go to wandb's run summary; the other trackers
    log them as `final/<key>` at the last step, beside the per-epoch `id/score`.
    """

    def __init__(self, pending: list[tuple[str, Callable[[], Any]]], config: dict) -> None:
        self.pending, self.config = pending, config  # (logger name, builder), not started
        self.trackers, self.last_step = [], None

    def started(self) -> list:
        """The trackers, started now if none has been yet."""
        if self.pending:
            from accelerate.state import PartialState

            PartialState()  # the run's Accelerator made it; else (the Python API) made here
            pending, self.pending = self.pending, []
            try:
                for name, build in pending:
                    tracker = build()
                    tracker.main_process_only = False  # only the main process tracks
                    if hasattr(tracker, "start"):  # accelerate 1.1 starts it in __init__
                        tracker.start()
                    self.trackers.append(tracker)
                    if name == "mlflow":  # wandb has the config from its init; csv and
                        tracker.store_init_configuration(flat_config(self.config))  # tb: .hydra
            except BaseException:
                self.finish(exit_code=1)
                raise
        return self.trackers

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        self.last_step = step if step is not None else self.last_step
        for tracker in self.started():
            tracker.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        for tracker in self.started():
            if tracker.name == "wandb":
                tracker.run.summary.update(values)
            else:
                tracker.log({f"final/{k}": v for k, v in values.items()}, step=self.last_step)

    def finish(self, exit_code: int = 0) -> None:
        for tracker in self.trackers:
            if tracker.name == "wandb":
                tracker.run.finish(exit_code=exit_code)  # a failed run shows as failed
            else:
                tracker.finish()
        self.trackers = []


def start_tracker(logger_cfg: DictConfig, config: dict[str, Any], name: str,
                  tags: dict[str, str], output_dir: str) -> NullTracker:
    """The trackers that `cfg.logger` names (its keys), checked now and started at their first
    use; `tags` name the task, method and model."""
    check_loggers(logger_cfg)
    from emoe_cli.tracking.records import is_main_process

    if not logger_cfg or not is_main_process():
        return NullTracker()
    hydra_cfg = current_hydra()
    group = sweep_group(hydra_cfg)
    run = RunInfo(name, dict(tags), str(output_dir), group, experiment_tags(hydra_cfg),
                  hydra_cfg.job.get("num") if group else None)
    return Trackers([(logger_name, partial(BUILDERS[logger_name], options or {}, run, config))
                     for logger_name, options in logger_cfg.items()], config)


@dataclass
class RunInfo:
    """What the trackers name, tag and group a run by."""

    name: str
    tags: dict[str, str]
    output_dir: str
    group: str | None  # the sweep folder, in a multirun
    experiment: list[str]
    job: int | None  # the job's number, in a multirun


def csv_tracker(options, run: RunInfo, config: dict):
    from emoe_cli.tracking.metrics_csv import CSVTracker

    return CSVTracker(run.name, run.output_dir)


def tensorboard_tracker(options, run: RunInfo, config: dict):
    """A folder per run; in a multirun, `<sweep>/tensorboard/<job>-<name>` so that
    `tensorboard --logdir <sweep>/tensorboard` shows the sweep's jobs side by side."""
    from accelerate.tracking import TensorBoardTracker

    if run.group is None:
        return TensorBoardTracker(run.name, os.path.join(run.output_dir, "tensorboard"))
    sweep_dir = Path(run.output_dir).resolve().parent
    return TensorBoardTracker(f"{run.job}-{run.name}", str(sweep_dir / "tensorboard"))


def mlflow_tracker(options, run: RunInfo, config: dict):
    import mlflow
    from accelerate.tracking import MLflowTracker

    if options.get("tracking_uri"):
        mlflow.set_tracking_uri(options["tracking_uri"])
    tags = {**run.tags, **dict(tag.split(":", 1) for tag in run.experiment)}
    if run.group:
        tags["sweep"] = run.group
    return MLflowTracker(experiment_name=options.get("experiment_name") or "emoe",
                         run_name=run.name, tags=tags)


def wandb_tracker(options, run: RunInfo, config: dict):
    """Grouped by sweep and tagged by task, method, model and experiment preset."""
    from accelerate.tracking import WandBTracker

    return WandBTracker(
        options.get("project", "emoe"), entity=options.get("entity"),
        mode=options.get("mode", "offline"), group=options.get("group") or run.group,
        name=run.name, tags=list(run.tags.values()) + run.experiment
        + list(options.get("tags") or []),
        config=config, dir=run.output_dir, reinit="finish_previous")


BUILDERS = {"csv": csv_tracker, "tensorboard": tensorboard_tracker, "mlflow": mlflow_tracker,
            "wandb": wandb_tracker}


def flat_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """`{"trainer": {"lr": 1}}` -> `{"trainer.lr": 1}`; lists and None as text."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str)) else str(value)
    return flat
