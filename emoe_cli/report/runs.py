"""Read every completed results.json under some folders into one table, a row per run.

A file that cannot be used (not a JSON object, a key a report needs missing, no finite ID
score) is skipped with one warning line naming it: one bad file never blocks a report.
"""

from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoe_cli.errors import UserError
from emoe_cli.report.variants import label_variants, setting
from emoe_cli.sweep.tally import SKIPPED_FILE
from emoe_cli.tracking.records import RESULTS_FILE, BadRecord, read_json_object

log = logging.getLogger("emoe")
COLUMNS = ["model", "selection", "task", "method", "variant", "lr", "seed", "select", "id",
           "ood_avg", "ood", "active_params", "step_seconds", "dense_variant", "ingredient",
           "kept_share", "hidden_relative_l2", "identity", "path"]
BARE_NAN = "a bare NaN/Infinity (not valid JSON; an older emoe-run wrote it)"


def _need(record: dict[str, Any], dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise BadRecord(f"no `{dotted}`")
        node = node[part]
    return node


def _score(value: Any) -> float:
    """A finite number, or NaN (null: it was non-finite when written; or not a number)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else np.nan


def _text(record: dict[str, Any], key: str) -> str:
    value = _need(record, key)
    if not isinstance(value, str):
        raise BadRecord(f"`{key}` is not a string")
    return value


def run_row(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """The numbers a report needs from one record (fractions, as recorded)."""
    row = {"model": _text(record, "model"), "selection": record.get("selection", "dev"),
           "task": _text(record, "task"), "method": _text(record, "method"),
           "seed": _need(record, "seed")}
    config = _need(record, "config")
    if not isinstance(config, dict):
        raise BadRecord("`config` is not an object")
    lr = _need(record, "config.trainer.lr")
    if not isinstance(row["seed"], int) or not isinstance(lr, numbers.Real):
        raise BadRecord("`seed` or `config.trainer.lr` is not a number")
    ood = record.get("ood") if isinstance(record.get("ood"), dict) else {}
    ood = {name: _score(result.get("score") if isinstance(result, dict) else None)
           for name, result in ood.items()}
    counts = record.get("ffn_params") if isinstance(record.get("ffn_params"), dict) else {}
    ablation = config.get("ablation") if isinstance(config.get("ablation"), dict) else {}
    score = _score(_need(record, "id.score"))
    receipt = record.get("conversion_receipt")
    receipt = receipt if isinstance(receipt, dict) else {}
    kept = receipt.get("kept_share") if isinstance(receipt.get("kept_share"), dict) else {}
    kept = [_score(v) for v in kept.values()]
    return {
        **row, "lr": lr,
        # what chose the epoch also chooses the rate: the dev score, or the held-out one
        "select": _score(record["selection_score"]) if "selection_score" in record else score,
        "id": score, "ood_avg": np.mean(list(ood.values())) if ood else np.nan,
        "ood": ood, "active_params": counts.get("active_per_token", np.nan),
        "step_seconds": record.get("seconds_per_step") or np.nan,
        "ingredient": ablation.get("ingredient"),  # conf/ingredient: one arm of that ablation
        # what conversion kept before training: mean over converted layers (NaN for dense)
        "kept_share": np.mean(kept) if kept else np.nan,
        "hidden_relative_l2": _score(receipt.get("hidden_relative_l2")),
        "identity": record.get("identity"), "path": str(path), "setting": setting(config),
    }


def read_run(path: Path) -> dict[str, Any] | None:
    """One completed run's row, or None (not completed, or unusable: one warning line)."""
    try:
        record, bare = read_json_object(path)
        if record.get("status") != "completed":
            return None
        row = run_row(record, path)
        row["mtime"] = path.stat().st_mtime_ns
    except OSError as error:
        log.warning("%s: cannot be read (%s); skipped", path, error.strerror or error)
        return None
    except BadRecord as error:
        log.warning("%s: %s; skipped (fix or delete it, or rerun that run)", path, error)
        return None
    for key, what in (("id", "ID score"), ("select", "selection score")):
        if np.isnan(row[key]):
            cause = f"; it is {BARE_NAN}" if bare else ""
            log.warning("%s: the %s is missing or not finite%s; skipped", path, what, cause)
            return None
    if bare:
        log.warning("%s: holds %s; read as missing", path, BARE_NAN)
    return row


def skipped_target(marker: Path) -> Path | None:
    """The results.json a sweep's `skipped.json` stands for (its completed twin), if usable."""
    try:
        target = read_json_object(marker)[0].get("completed_at")
    except (OSError, BadRecord) as error:
        log.warning("%s: %s; ignored", marker, getattr(error, "strerror", None) or error)
        return None
    if not isinstance(target, str) or not Path(target).is_file():
        log.warning("%s: points at %s, which is not there; ignored (rerun the sweep to run "
                    "that job again)", marker, target)
        return None
    return Path(target).resolve()


def find_records(folders: list[str | Path]) -> list[Path]:
    """Every results.json below the folders, and the one each skipped job stands for."""
    missing = [str(f) for f in folders if not Path(f).is_dir()]
    if missing:
        raise UserError(f"emoe-report: {missing[0]} is not a directory; give folders that hold "
                        "runs (e.g. outputs/multirun)")
    found = {p.resolve() for f in folders for p in Path(f).rglob(RESULTS_FILE)}
    for marker in sorted(p for f in folders for p in Path(f).rglob(SKIPPED_FILE)):
        target = skipped_target(marker)
        if target is not None:
            found.add(target)
    return sorted(found)


def newest_per_seed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per (cell, variant, rate, seed): the newest results.json (by modification time).

    The same run found twice (a copied folder, a sweep relaunched with skipping off, a
    skipped job's twin) would otherwise count its seed twice. The newest wins rather than
    the best-scoring one, so keeping duplicates cannot flatter a method; it is the run made
    with the most recent code.
    """
    kept: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(str(row[k]) for k in ("model", "selection", "task", "method", "variant",
                                          "lr", "seed"))
        if key not in kept or (row["mtime"], row["path"]) > (kept[key]["mtime"],
                                                             kept[key]["path"]):
            kept[key] = row
    if len(kept) < len(rows):
        log.warning("%d results.json repeat a run already found (same settings, rate and "
                    "seed); each counted once, the newest kept", len(rows) - len(kept))
    return list(kept.values())


def load_runs(folders: list[str | Path]) -> pd.DataFrame:
    """Completed runs under `folders`, each labelled with its variant, each seed once."""
    rows = [row for row in map(read_run, find_records(folders)) if row is not None]
    label_variants(rows)
    return pd.DataFrame(newest_per_seed(rows), columns=COLUMNS)


def flat_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The run table with a column per OOD set (`ood_<name>`) instead of a dict, for CSV."""
    ood = pd.DataFrame(list(runs["ood"]), index=runs.index).add_prefix("ood_")
    return pd.concat([runs.drop(columns="ood"), ood], axis=1)
