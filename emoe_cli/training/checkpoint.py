"""Resumable training state on disk: one folder per run identity, replaced atomically.

`accelerate` saves the model, optimiser, schedule and every RNG state; the loop's own
progress (epoch, step, history, best-so-far weights) rides along as a registered object. A
new checkpoint is written to a temporary folder and swapped in, so a crash while saving
leaves the previous one intact.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

log = logging.getLogger("emoe")
COMPLETE_MARKER = "complete"


@dataclass
class TrainingState:
    """Where training stands; everything the loop needs to continue as if never stopped."""

    epoch: int = 0                 # epochs finished
    batches_done: int = 0          # micro-batches of the current epoch already trained
    step: int = 0                  # optimiser steps taken
    epoch_losses: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_eval: dict | None = None
    stale: int = 0                 # epochs since the best one (early stopping)
    finished: bool = False
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    best_state: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class CheckpointStore:
    """The checkpoint of one run at `<root>/<identity>`; `save` replaces it atomically."""

    def __init__(self, root: str | Path, identity: str) -> None:
        self.folder = Path(root).expanduser() / identity
        self.current = self.folder / "last"
        self.previous = self.folder / "last.old"

    def latest(self) -> Path | None:
        """The newest complete checkpoint (the old one if a crash hit between the renames)."""
        for candidate in (self.current, self.previous):
            if (candidate / COMPLETE_MARKER).is_file():
                return candidate
        return None

    def save(self, accelerator: Accelerator) -> Path:
        """Write every prepared and registered object, then swap the new folder in."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=".saving-"))
        try:
            accelerator.save_state(str(staging))
            (staging / COMPLETE_MARKER).touch()
            if self.current.exists():
                shutil.rmtree(self.previous, ignore_errors=True)
                os.replace(self.current, self.previous)
            os.replace(staging, self.current)
            shutil.rmtree(self.previous, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.current

    def load(self, accelerator: Accelerator) -> Path | None:
        """Restore the latest checkpoint into the prepared objects; None if there is none."""
        latest = self.latest()
        if latest is not None:
            accelerator.load_state(str(latest))
        return latest

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
