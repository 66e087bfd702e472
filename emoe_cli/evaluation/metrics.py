"""Task metrics, computed offline with scikit-learn and SciPy.

Values are fractions in [0, 1] (correlations in [-1, 1]); a task's score is their mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from emoe_cli.config.schema import METRIC_NAMES


def _correlation(fn: Callable) -> Callable[[np.ndarray, np.ndarray], float]:
    def compute(predictions: np.ndarray, labels: np.ndarray) -> float:
        if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
            return 0.0  # undefined for a constant input: count as no correlation
        return float(fn(predictions, labels)[0])

    return compute


_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda p, y: float(accuracy_score(y, p)),
    "f1": lambda p, y: float(f1_score(y, p, zero_division=0.0)),
    "matthews_correlation": lambda p, y: float(matthews_corrcoef(y, p)),
    "pearson": _correlation(pearsonr),
    "spearmanr": _correlation(spearmanr),
}
# Keyed by the config layer's names, so a name without its function fails at import.
METRICS = {name: _FUNCTIONS[name] for name in METRIC_NAMES}


def compute_metrics(names: Sequence[str], predictions, labels) -> dict[str, float]:
    """Each named metric of `predictions` against `labels`."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; valid: {', '.join(METRICS)}")
    return {name: METRICS[name](predictions, labels) for name in names}


def score(metrics: dict[str, float]) -> float:
    """The task's single number: the mean of its metrics."""
    return float(np.mean(list(metrics.values())))
