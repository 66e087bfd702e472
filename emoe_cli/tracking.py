"""Experiment tracking: wandb (offline by default) or nothing.

In a multirun every run joins a wandb group named after the sweep's folder, so the runs of
one launch sit together; tags name the task, method, model and experiment preset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.types import RunMode
from omegaconf import DictConfig


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


class NullTracker:
    """`logger=none`: tracking switched off."""

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbTracker(NullTracker):
    """A wandb run grouped by sweep and tagged by task, method and model."""

    def __init__(self, logger_cfg, config: dict[str, Any], name: str, tags: list[str],
                 output_dir: str) -> None:
        import wandb

        self._wandb = wandb
        hydra_cfg = current_hydra()
        self.run = wandb.init(
            project=logger_cfg.project, entity=logger_cfg.get("entity"), mode=logger_cfg.mode,
            group=logger_cfg.get("group") or sweep_group(hydra_cfg), name=name,
            tags=tags + experiment_tags(hydra_cfg) + list(logger_cfg.tags),
            config=config, dir=output_dir, reinit="finish_previous",
        )

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        self.run.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def start_tracker(logger_cfg, config: dict[str, Any], name: str, tags: list[str],
                  output_dir: str) -> NullTracker:
    if logger_cfg.name == "none":
        return NullTracker()
    return WandbTracker(logger_cfg, config, name, tags, output_dir)
