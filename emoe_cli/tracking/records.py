"""The run record, `results.json`, and its atomic write."""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
# Result keys beside `metrics` and `score`: language models' held-out loss and perplexity
# (not metrics: they are not fractions, and lower is better). Epoch entries carry them too.
SCORE_EXTRAS = ("loss", "perplexity")


def zero_timing() -> dict[str, float]:
    return {"convert": 0.0, "train": 0.0, "eval": 0.0}


@dataclass
class RunRecord:
    """What one run did and measured; the keys are the public contract."""

    task: str
    model: str
    method: str
    seed: int
    config: dict[str, Any]
    status: str = "running"
    id: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=zero_timing)
    best_epoch: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        extra = record.pop("extra")
        if record["error"] is None:
            record.pop("error")
        return {**record, **extra}


def start_record(cfg, method: str, converted: bool, **notes: Any) -> RunRecord:
    """A record before anything ran: what runs (task, model, `method`, seed, profile, the
    resolved config, any `notes`) and, for a `converted` model, its experts for the summary
    line."""
    from omegaconf import OmegaConf

    record = RunRecord(task=cfg.task.name, model=cfg.model.name, method=method, seed=cfg.seed,
                       config=OmegaConf.to_container(cfg, resolve=True))
    record.extra["profile"] = OmegaConf.select(cfg, "profile.name", default="clean")
    record.extra.update(notes)
    if converted:
        record.extra["moe_summary"] = (f" (N={cfg.moe.num_experts}, k={cfg.moe.top_k}, "
                                       f"layers {cfg.moe.layers})")
    return record

class Unset(Enum):
    """A result field its step never set: the key stays out of results.json (None is a value)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass
class RunResult:
    """What one experiment produced, filled step by step: a run that fails part-way still
    holds what its finished steps set (the record keeps that too).

    `id` … `timing` are the record's own fields. Every other field is a top-level extra key
    of results.json, in this order, once set; `task_notes` (the workload's notes, e.g.
    `domains`) adds its keys in its place.
    """

    id: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    timing: dict[str, float] = field(default_factory=zero_timing)
    weights: str | Unset = UNSET  # the resolved model path
    task_notes: dict[str, Any] = field(default_factory=dict)
    skipped_rows: dict[str, int] | Unset = UNSET  # task.bad_rows=skip: per file
    ood_missing: dict[str, str] | Unset = UNSET  # OOD sets skipped as absent: why
    conversion_receipt: dict[str, Any] | Unset = UNSET
    ffn_params: dict[str, float] | None | Unset = UNSET  # None: not countable
    lora: dict[str, Any] | Unset = UNSET  # what LoRA trains
    resumed_from: str | Unset = UNSET  # the checkpoint folder
    selection: str | Unset = UNSET  # the rule that chose the epoch: dev or heldout
    selection_score: float | Unset = UNSET
    selection_fraction: float | Unset = UNSET
    seconds_per_step: float | None | Unset = UNSET
    predictions: dict[str, Any] | Unset = UNSET  # eval.save_predictions: the files
    routing_file: str | Unset = UNSET  # analysis.routing: the file's name
    saved_model: str | Unset = UNSET  # moe.save_model: the folder
    dense_export: dict[str, Any] | Unset = UNSET  # moe.export_dense: the folder and its scores

    def extras(self) -> dict[str, Any]:
        """The set extra fields, as results.json's top-level keys."""
        extras: dict[str, Any] = {}
        for spec in fields(self)[len(RECORD_FIELDS):]:
            value = getattr(self, spec.name)
            if spec.name == "task_notes":
                extras.update(value)
            elif value is not UNSET:
                extras[spec.name] = value
        return extras


RECORD_FIELDS = ("id", "ood", "epochs", "best_epoch", "timing")  # RunResult's first fields


def record_result(record: RunRecord, result: RunResult) -> None:
    """Put `result` into `record`: its own fields, then the extras after those already there."""
    record.id, record.ood, record.epochs = result.id, result.ood, result.epochs
    record.best_epoch = result.best_epoch
    record.timing.update(result.timing)
    record.extra.update(result.extras())


def finite_json(value: Any, where: str = "", found: list[str] | None = None) -> Any:
    """`value` with every NaN or infinity replaced by None (JSON has no such numbers); the
    dotted path of each one replaced is appended to `found`. Numpy scalars become plain
    Python numbers."""
    if isinstance(value, dict):
        return {key: finite_json(item, f"{where}{key}.", found) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item, f"{where}{i}.", found) for i, item in enumerate(value)]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if math.isfinite(value):
        return float(value)
    if found is not None:
        found.append(where.rstrip("."))
    return None


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` so readers see the old file or the new one, never half of either.

    Always strict JSON: non-finite numbers are written as null (`finite_json`), and
    `allow_nan=False` turns any that slip through into an error here, not a file that
    other tools cannot read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(finite_json(payload), file, indent=2, sort_keys=False, default=str,
                      allow_nan=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class BadRecord(ValueError):
    """A JSON file that is there but cannot be used; the message says why, in a few words."""


def read_json_object(path: str | Path) -> tuple[dict[str, Any], bool]:
    """The JSON object in `path`, and whether it held a bare NaN or Infinity (read as None).

    Older versions wrote non-finite scores as bare `NaN`, which is not JSON; reading it as
    None (missing) keeps such records usable. Raises OSError when the file cannot be read
    and BadRecord when it is not a JSON object (truncated, binary, a list, a number).
    """
    bare: list[str] = []

    def missing(constant: str) -> None:
        bare.append(constant)

    try:
        payload = json.loads(Path(path).read_bytes().decode("utf-8"), parse_constant=missing)
    except UnicodeDecodeError as error:
        raise BadRecord(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise BadRecord(f"not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(payload, dict):
        kind = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
            type(payload), "a number")
        raise BadRecord(f"not a JSON object ({kind})")
    return payload, bool(bare)


def is_main_process() -> bool:
    """False in the extra processes of `accelerate launch` / torchrun (their RANK is not 0)."""
    return os.environ.get("RANK", "0") == "0"


def save_record(record: RunRecord, output_dir: str | Path) -> Path:
    """Write results.json; in a multi-process run only the main process writes it."""
    path = Path(output_dir) / RESULTS_FILE
    if is_main_process():
        non_finite: list[str] = []
        payload = finite_json(record.to_dict(), found=non_finite)
        if non_finite:  # written as null; say which, so a null reads as "was NaN/inf"
            payload["non_finite"] = non_finite
        write_json_atomic(path, payload)
    return path
