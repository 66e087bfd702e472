"""What `emoe-eval load=<path>` points at, found from the files alone (no torch), and the
config of the run that made it.

Four kinds of folder: a saved EMoE model (`moe.save_model`: has emoe.json), a plain Hugging
Face model (`moe.export_dense`, or any fine-tuned classifier), a checkpoint
(`trainer.checkpoint`: its `last` folder or the run's checkpoint folder above it), or a run
folder (results.json), which stands for its saved model, else its checkpoint, else its dense
export. A model folder inside a run folder, and a checkpoint with the config.json emoe-run
writes beside it, bring the run's config; anything else is evaluated under the config the
command line composes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoe_cli.errors import UserError

RESULTS = "results.json"
EMOE_SPEC = "emoe.json"  # moe/serialize.py's SPEC_FILE
MANIFEST, COMPLETE = "manifest.json", "complete"  # training/checkpoint.py
CHECKPOINT_FOLDERS = ("last", "last.old")  # newest first, as CheckpointStore.latest
RUN_CONFIG = "config.json"  # the run's resolved config, written by recipe.py beside `last`
WEIGHT_SUFFIXES = (".safetensors", ".bin")
KINDS = ("emoe", "dense", "checkpoint")
VALID = ("valid: a saved EMoE model folder (moe.save_model, has emoe.json), a Hugging Face "
         "model folder (moe.export_dense), a checkpoint folder (trainer.checkpoint) or a run "
         "folder with results.json")


@dataclass
class Source:
    """A model to evaluate: its `kind` (one of KINDS), its folder, and, when known, the run
    it came from (`run_config`, and `run_record`: the results.json it was read from)."""

    kind: str
    folder: Path
    run_config: dict[str, Any] | None = None
    run_record: Path | None = None
    identity: str | None = None  # a checkpoint's run identity (its parent folder's name)


def bad(path, why: str) -> UserError:
    return UserError(f"load={path}: {why}; {VALID}")


def read_object(path: Path, what: str, shown) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise bad(shown, f"{path} is not a readable {what} ({type(error).__name__})") from None
    if not isinstance(payload, dict):
        raise bad(shown, f"{path} is not a {what} (not a JSON object)")
    return payload


def run_config_of(results: Path, shown) -> dict:
    config = read_object(results, "run record", shown).get("config")
    if not isinstance(config, dict):
        raise bad(shown, f"{results} has no `config` to rebuild the run's model from")
    return config


def is_checkpoint(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / COMPLETE).is_file()


def is_hf_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir())


def from_model_folder(kind: str, folder: Path) -> Source:
    """A model folder, with the config of the run folder it sits in, if any."""
    results = folder.parent / RESULTS
    if results.is_file():
        return Source(kind, folder, run_config_of(results, folder), results)
    return Source(kind, folder)


def from_checkpoint(folder: Path) -> Source:
    """A checkpoint's `last` folder: the run's config from config.json beside it, if there."""
    config_file = folder.parent / RUN_CONFIG
    config = read_object(config_file, "run config", folder) if config_file.is_file() else None
    return Source("checkpoint", folder, config, None, folder.parent.name)


def from_run(folder: Path) -> Source:
    """A run folder: its saved model, else its kept checkpoint, else its dense export."""
    results = folder / RESULTS
    record = read_object(results, "run record", folder)
    config = run_config_of(results, folder)
    if is_emoe_model(folder / "model"):
        return Source("emoe", folder / "model", config, results)
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    identity = record.get("identity")
    if trainer.get("checkpoint_dir") and isinstance(identity, str):
        store = Path(trainer["checkpoint_dir"]).expanduser() / identity
        for name in CHECKPOINT_FOLDERS:
            if is_checkpoint(store / name):
                return Source("checkpoint", store / name, config, results, identity)
    if (folder / "dense_model").is_dir() and is_hf_model(folder / "dense_model"):
        return Source("dense", folder / "dense_model", config, results)
    raise bad(folder, "a run folder with no saved model, kept checkpoint or dense export "
              "(run with moe.save_model=true, trainer.keep_checkpoint=true or "
              "moe.export_dense=true)")


def is_emoe_model(folder: Path) -> bool:
    return (folder / EMOE_SPEC).is_file()


def find_source(text: str) -> Source:
    """The model `load=<text>` names, or a UserError saying what would be valid."""
    if not text or text in ("???", "null", "None"):
        raise UserError(f"load is required; {VALID}, e.g. load=outputs/runs/<date>/<run>")
    folder = Path(text).expanduser()
    if folder.is_file() and folder.name == RESULTS:
        folder = folder.parent
    if not folder.is_dir():
        raise bad(text, "no such folder")
    if is_emoe_model(folder):
        return from_model_folder("emoe", folder)
    if is_checkpoint(folder):
        return from_checkpoint(folder)
    for name in CHECKPOINT_FOLDERS:  # the run's checkpoint folder, above `last`
        if is_checkpoint(folder / name):
            return from_checkpoint(folder / name)
    if (folder / RESULTS).is_file():
        return from_run(folder)
    if is_hf_model(folder):
        return from_model_folder("dense", folder)
    raise bad(text, "not a model, checkpoint or run folder")
