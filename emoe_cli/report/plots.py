"""Bar charts comparing methods per task: ID score and OOD average, error bars = std."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no display or global state needed

from emoe_cli.report.render import SCALE, method_label


def plot_model(cell_table: pd.DataFrame, title: str, path: Path) -> Path:
    """One figure, two panels (ID, OOD avg): tasks on the x axis, a bar per method (and
    variant)."""
    tasks = sorted(cell_table["task"].unique())
    labels = pd.Series([method_label(m, v) for m, v in zip(cell_table["method"],
                                                             cell_table["variant"])],
                       index=cell_table.index)
    methods = sorted(labels.unique(), key=lambda m: (m.split(" (")[0] != "dense", m))
    width = 0.8 / len(methods)
    figure = Figure(figsize=(max(6, 1.6 * len(tasks) + 3), 3.6))
    axes = figure.subplots(1, 2)
    for axis, (column, label) in zip(axes, [("id", "ID score"), ("ood", "OOD average")]):
        for i, method in enumerate(methods):
            rows = cell_table[labels == method].set_index("task").reindex(tasks)
            axis.bar(np.arange(len(tasks)) + i * width, SCALE * rows[f"{column}_mean"],
                     width, yerr=SCALE * rows[f"{column}_std"].fillna(0), capsize=3,
                     label=method)
        axis.set_xticks(np.arange(len(tasks)) + width * (len(methods) - 1) / 2, tasks)
        axis.set_ylabel(f"{label} (×100)")
        axis.set_title(label)
        low = np.nanmin(SCALE * cell_table[f"{column}_mean"])
        if np.isfinite(low):
            axis.set_ylim(bottom=max(0.0, low - 10))
    axes[0].legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def plot_all(cell_table: pd.DataFrame, out: Path) -> list[Path]:
    """A PNG per (model, selection rule)."""
    paths = []
    for (model, selection), group in cell_table.groupby(["model", "selection"]):
        paths.append(plot_model(group, f"{model} (selection: {selection})",
                                out / f"methods_{model}_{selection}.png"))
    return paths
