"""Experiment tracking: wandb (offline by default) or nothing."""

from __future__ import annotations

from typing import Any


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
        self.run = wandb.init(
            project=logger_cfg.project, entity=logger_cfg.get("entity"), mode=logger_cfg.mode,
            group=logger_cfg.get("group"), name=name, tags=tags + list(logger_cfg.tags),
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
