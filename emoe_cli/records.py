"""The run record, `results.json`, and its atomic write."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
# Result keys beside `metrics` and `score`: language models' held-out loss and perplexity
# (not metrics: they are not fractions, and lower is better). Epoch entries carry them too.
SCORE_EXTRAS = ("loss", "perplexity")


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
    timing: dict[str, float] = field(default_factory=lambda: {"convert": 0.0, "train": 0.0,
                                                              "eval": 0.0})
    best_epoch: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        extra = record.pop("extra")
        if record["error"] is None:
            record.pop("error")
        return {**record, **extra}


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` so readers see the old file or the new one, never half of either."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(payload, file, indent=2, sort_keys=False, default=str)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def is_main_process() -> bool:
    """False in the extra processes of `accelerate launch` / torchrun (their RANK is not 0)."""
    return os.environ.get("RANK", "0") == "0"


def save_record(record: RunRecord, output_dir: str | Path) -> Path:
    """Write results.json; in a multi-process run only the main process writes it."""
    path = Path(output_dir) / RESULTS_FILE
    if is_main_process():
        write_json_atomic(path, record.to_dict())
    return path
