"""Bar charts comparing methods per task: ID score and OOD average, error bars = std.

Drawn to be kept in a paper or a notebook: bars start at 0 on an axis that holds every error
bar whole, the legend sits outside the axes (below them) so it can cover no data, and each
figure is written as a 300 dpi PNG beside vector PDF and SVG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure  # no pyplot: no display or global state needed

from emoe_cli.report.render import SCALE, method_label

FORMATS = ("png", "pdf", "svg")
DPI = 300  # PNG only; PDF and SVG are vector
# No creation dates, and SVG ids from a fixed salt: the same records give the same bytes.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def value_limits(lows: list[float], highs: list[float]) -> tuple[float, float]:
    """The y range: from 0 (or below, for negative scores such as a poor MCC) to the highest
    error bar, with a 5 % margin, so no error bar is cut and the bars' base is visible."""
    finite_lows = [v for v in lows if np.isfinite(v)]
    finite_highs = [v for v in highs if np.isfinite(v)]
    low, high = min([0.0, *finite_lows]), max([0.0, *finite_highs])
    margin = 0.05 * (high - low) or 1.0
    return (low - margin if low < 0 else 0.0), high + margin


def method_figure(cell_table: pd.DataFrame, title: str) -> Figure:
    """One figure, two panels (ID, OOD avg): tasks on the x axis, a bar per method (and
    variant), the legend in a row under both panels."""
    tasks = sorted(cell_table["task"].unique())
    labels = pd.Series([method_label(m, v) for m, v in zip(cell_table["method"],
                                                             cell_table["variant"])],
                       index=cell_table.index)
    methods = sorted(labels.unique(), key=lambda m: (m.split(" (")[0] != "dense", m))
    width = 0.8 / len(methods)
    figure = Figure(figsize=(max(6, 1.6 * len(tasks) + 3), 4.2), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, (column, label) in zip(axes, [("id", "ID score"), ("ood", "OOD average")]):
        lows, highs = [], []
        for i, method in enumerate(methods):
            rows = cell_table[labels == method].set_index("task").reindex(tasks)
            mean = SCALE * rows[f"{column}_mean"].to_numpy(dtype=float)
            error = SCALE * rows[f"{column}_std"].fillna(0).to_numpy(dtype=float)
            axis.bar(np.arange(len(tasks)) + i * width, mean, width, yerr=error, capsize=3,
                     label=method)
            lows.extend(mean - error)
            highs.extend(mean + error)
        axis.set_ylim(*value_limits(lows, highs))
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(np.arange(len(tasks)) + width * (len(methods) - 1) / 2, tasks)
        axis.set_ylabel(f"{label} (×100)")
        axis.set_title(label)
        axis.grid(axis="y", alpha=0.3)
        axis.set_axisbelow(True)
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncols=min(len(methods), 6),
                  frameon=False)
    figure.suptitle(title)
    return figure


def plot_model(cell_table: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """Write the figure as `<stem>.png`, `.pdf` and `.svg`; return their paths."""
    figure = method_figure(cell_table, title)
    paths = []
    with rc_context({"svg.hashsalt": "emoe-report"}):
        for kind in FORMATS:
            path = stem.with_name(f"{stem.name}.{kind}")
            figure.savefig(path, dpi=DPI, metadata=METADATA[kind])
            paths.append(path)
    return paths


def plot_all(cell_table: pd.DataFrame, out: Path) -> list[Path]:
    """PNG, PDF and SVG files per (model, selection rule): `methods_<model>_<selection>.*`."""
    paths = []
    for (model, selection), group in cell_table.groupby(["model", "selection"]):
        paths.extend(plot_model(group, f"{model} (selection: {selection})",
                                out / f"methods_{model}_{selection}"))
    return paths
