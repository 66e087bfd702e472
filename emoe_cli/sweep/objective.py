"""What a run hands back to a Hydra sweeper (the Optuna preset maximises it)."""

from __future__ import annotations

import math
from typing import Any


def sweep_objective(record: dict[str, Any]) -> float | None:
    """The score that selected the run's best epoch: dev under `data.selection=dev`, the
    held-out part of train under `heldout`, so a study never tunes on a split it only reports.

    None for a run without a finite score (failed, interrupted): Hydra's Optuna sweeper then
    records a failed trial and goes on, where NaN would end the study (Optuna refuses it).
    """
    if record.get("status") != "completed":
        return None
    score = record.get("selection_score")
    if score is None:  # records from before selection_score: dev selection, the ID score
        score = (record.get("id") or {}).get("score")
    try:
        score = float(score)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None
