"""Resumable training state on disk: one folder per run identity, replaced atomically.

`accelerate` saves the model (safetensors), optimiser, schedule and every RNG state, all read
back with `torch.load(weights_only=True)`; the loop's own progress goes beside them as JSON and
its best-so-far weights as safetensors, so no file a resume reads can run code. A manifest
lists every file with its size and SHA-256 and the fingerprint of the data trained and
selected on: a resume first checks all of them, so a missing, cut-short, altered or planted
file, or other data, refuses with one line instead of resuming into different numbers.
A new checkpoint is written to a temporary folder and swapped in, so a crash while saving
leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils.other import load as load_weights_only  # torch.load, weights_only=True
from safetensors.torch import load_file, save_file

from emoe_cli.errors import CheckpointError, RunFailure

log = logging.getLogger("emoe")
COMPLETE_MARKER = "complete"
MANIFEST = "manifest.json"
STATE_FILE = "training_state.json"
BEST_WEIGHTS = "best_state.safetensors"
FORMAT = 2  # 1: the loop state as a pickle (custom_checkpoint_0.pkl), never read back
START_OVER = "rerun with trainer.resume=false to start over"


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

    def save(self, folder: Path) -> None:
        """Progress as JSON (floats round-trip exactly) and the best weights as safetensors."""
        progress = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "best_state"}
        (folder / STATE_FILE).write_text(json.dumps(progress, default=_plain))
        if self.best_state is not None:
            save_file({k: v.contiguous() for k, v in self.best_state.items()},
                      str(folder / BEST_WEIGHTS))

    def load(self, folder: Path) -> None:
        progress = json.loads((folder / STATE_FILE).read_text())
        known = {f.name for f in fields(self)} - {"best_state"}
        if not isinstance(progress, dict) or set(progress) != known:
            raise ValueError(f"expected the keys {', '.join(sorted(known))}")
        for key, value in progress.items():
            setattr(self, key, value)
        weights = folder / BEST_WEIGHTS
        self.best_state = load_file(str(weights)) if weights.is_file() else None


def _plain(value: Any) -> Any:
    """numpy / torch scalars as Python numbers, for json."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class CheckpointStore:
    """The checkpoint of one run at `<root>/<identity>`; `save` replaces it atomically.

    `data` is the fingerprint of the data the run trains and selects on (see fingerprint.py);
    it is saved with every checkpoint and must match for a resume.
    """

    def __init__(self, root: str | Path, identity: str, data: dict | None = None) -> None:
        self.folder = Path(root).expanduser() / identity
        self.current = self.folder / "last"
        self.previous = self.folder / "last.old"
        self.staging = self.folder / ".saving"
        self.data = data or {}

    def latest(self) -> Path | None:
        """The newest complete checkpoint (the old one if a crash hit between the renames)."""
        for candidate in (self.current, self.previous):
            if (candidate / COMPLETE_MARKER).is_file():
                return candidate
        return None

    def save(self, accelerator: Accelerator, state: TrainingState) -> Path:
        """Write every prepared object, the loop state and the manifest, then swap in."""
        main = accelerator.is_main_process
        if main:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        try:
            accelerator.save_state(str(self.staging))  # each process adds its RNG state
            accelerator.wait_for_everyone()
            if main:
                state.save(self.staging)
                self._write_manifest(self.staging)
                (self.staging / COMPLETE_MARKER).touch()
                if self.current.exists():
                    shutil.rmtree(self.previous, ignore_errors=True)
                    os.replace(self.current, self.previous)
                os.replace(self.staging, self.current)
                shutil.rmtree(self.previous, ignore_errors=True)
        except BaseException as error:
            if main:
                shutil.rmtree(self.staging, ignore_errors=True)
            if isinstance(error, OSError):  # e.g. a full disk: one line, the last one kept
                raise RunFailure(f"trainer.checkpoint_dir: could not save {self.current} "
                                 f"({error.strerror or error}); the previous checkpoint is "
                                 "kept; free space or set trainer.checkpoint=false") from None
            raise
        accelerator.wait_for_everyone()
        return self.current

    def _write_manifest(self, folder: Path) -> None:
        files = {p.name: {"bytes": p.stat().st_size, "sha256": file_digest(p)}
                 for p in sorted(folder.iterdir()) if p.is_file()}
        (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": files,
                                                   "data": self.data}, indent=1))

    def load(self, accelerator: Accelerator, state: TrainingState) -> Path | None:
        """Check, then restore the latest checkpoint; None if there is none.

        Raises CheckpointError (one line naming the file) for anything incomplete, damaged,
        planted or trained on other data.
        """
        latest = self.latest()
        if latest is None:
            return None
        self.verify(latest, accelerator.process_index)
        rng = latest / f"random_states_{accelerator.process_index}.pkl"
        try:  # accelerate skips an RNG file it cannot read, which would resume other numbers
            load_weights_only(rng)
        except Exception as error:
            raise CheckpointError(f"{rng}: not a saved RNG state ({type(error).__name__}); "
                                  f"{START_OVER}") from None
        try:
            accelerator.load_state(str(latest))
            state.load(latest)
        except Exception as error:  # verified files still failing: say which folder, once
            reason = str(error).splitlines()[0] if str(error) else ""
            raise CheckpointError(f"{latest}: could not be restored ({type(error).__name__}: "
                                  f"{reason}); {START_OVER}") from None
        return latest

    def verify(self, folder: Path, process_index: int = 0) -> None:
        """Every part present, whole and unchanged, and the same data: else CheckpointError."""
        manifest = read_manifest(folder)
        listed = manifest["files"]
        needed = [STATE_FILE, "optimizer.bin", "scheduler.bin",
                  f"random_states_{process_index}.pkl"]
        if not any(name.startswith("model") for name in listed):
            needed.append("model.safetensors")
        for name in [*needed, *listed]:
            path = folder / name
            if Path(name).name != name:
                raise CheckpointError(f"{folder / MANIFEST}: lists {name!r}, outside the "
                                      f"checkpoint; {START_OVER}")
            entry = listed.get(name)
            if entry is None or not path.is_file():
                raise CheckpointError(f"{path}: missing, so the checkpoint is incomplete; "
                                      f"{START_OVER}")
            size = path.stat().st_size
            if size != entry.get("bytes"):
                raise CheckpointError(f"{path}: {size} bytes, but {entry.get('bytes')} were "
                                      f"saved (cut short or replaced); {START_OVER}")
            if file_digest(path) != entry.get("sha256"):
                raise CheckpointError(f"{path}: its contents changed since it was saved "
                                      f"(SHA-256 differs); {START_OVER}")
        saved = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
        if same_rows(saved) != same_rows(self.data):  # where the data lives may change
            raise CheckpointError(data_mismatch(folder, saved, self.data))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def read_manifest(folder: Path) -> dict:
    """The manifest of `folder`, or CheckpointError if there is none this version can trust."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (an incomplete checkpoint, or one written by an "
                              f"older emoe whose state files are not safe to load); "
                              f"{START_OVER}") from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable ({type(error).__name__}); "
                              f"{START_OVER}") from None
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT
            and isinstance(manifest.get("files"), dict)
            and all(isinstance(v, dict) for v in manifest["files"].values())):
        raise CheckpointError(f"{path}: not a format-{FORMAT} checkpoint manifest; {START_OVER}")
    return manifest


def same_rows(fingerprint: dict) -> dict:
    """What must match for a resume: each role's row count and hash, not its location."""
    return {role: (entry.get("rows"), entry.get("sha256")) if isinstance(entry, dict) else entry
            for role, entry in fingerprint.items()}


def data_mismatch(folder: Path, saved: dict, current: dict) -> str:
    """The one line for a checkpoint whose training or selection data is not today's."""
    for role in sorted(set(saved) | set(current)):
        before, now = saved.get(role), current.get(role)
        before, now = (before if isinstance(before, dict) else {}), (now or {})
        if before.get("sha256") != now.get("sha256"):
            source = now.get("source") or before.get("source") or "the data"
            counts = (f" ({before.get('rows')} rows then, {now.get('rows')} now)"
                      if before.get("rows") != now.get("rows") else "")
            return (f"{source}: the {role} data differs from what checkpoint {folder} was "
                    f"trained on{counts}; restore that data, or {START_OVER}")
    return f"{folder}: saved for other data; {START_OVER}"
