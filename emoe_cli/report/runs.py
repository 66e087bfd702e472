"""Read every completed results.json under some folders into one table, a row per run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoe_cli.errors import UserError
from emoe_cli.records import RESULTS_FILE

log = logging.getLogger("emoe")
COLUMNS = ["model", "selection", "task", "method", "lr", "seed", "select", "id", "ood_avg",
           "ood", "active_params", "step_seconds", "kept_share", "hidden_relative_l2",
           "identity", "path"]


def run_row(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """The numbers a report needs from one record (fractions, as recorded)."""
    ood = {name: result["score"] for name, result in record.get("ood", {}).items()}
    counts = record.get("ffn_params") or {}
    receipt = record.get("conversion_receipt") or {}
    kept = list((receipt.get("kept_share") or {}).values())
    return {
        "model": record["model"], "selection": record.get("selection", "dev"),
        "task": record["task"], "method": record["method"],
        "lr": record["config"]["trainer"]["lr"], "seed": record["seed"],
        # what chose the epoch also chooses the rate: the dev score, or the held-out one
        "select": record.get("selection_score", record["id"]["score"]),
        "id": record["id"]["score"], "ood_avg": np.mean(list(ood.values())) if ood else np.nan,
        "ood": ood, "active_params": counts.get("active_per_token", np.nan),
        "step_seconds": record.get("seconds_per_step") or np.nan,
        # what conversion kept before training: mean over converted layers (NaN for dense)
        "kept_share": np.mean(kept) if kept else np.nan,
        "hidden_relative_l2": receipt.get("hidden_relative_l2", np.nan),
        "identity": record.get("identity"), "path": str(path),
    }


def find_records(folders: list[str | Path]) -> list[Path]:
    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing:
        raise UserError(f"emoe-report: {missing[0]} is not a directory; give folders that hold "
                        "runs (e.g. outputs/multirun)")
    return sorted({p.resolve() for f in folders for p in Path(f).rglob(RESULTS_FILE)})


def load_runs(folders: list[str | Path]) -> pd.DataFrame:
    """Completed runs under `folders`; a run found twice (same identity) counts once."""
    rows, seen = [], set()
    for path in find_records(folders):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            log.warning("skipping unreadable %s: %s", path, error)
            continue
        if record.get("status") != "completed":
            continue
        identity = record.get("identity")
        if identity and identity in seen:
            continue
        seen.add(identity)
        rows.append(run_row(record, path))
    return pd.DataFrame(rows, columns=COLUMNS)


def flat_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The run table with a column per OOD set (`ood_<name>`) instead of a dict, for CSV."""
    ood = pd.DataFrame(list(runs["ood"]), index=runs.index).add_prefix("ood_")
    return pd.concat([runs.drop(columns="ood"), ood], axis=1)
