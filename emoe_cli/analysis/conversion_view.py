"""The `emoe-inspect` table as people read it: text on the terminal, a CSV and a heat map."""

from __future__ import annotations

import csv
from dataclasses import fields
from pathlib import Path

import numpy as np

from emoe_cli.analysis.conversion_table import InspectRow

CSV_FILE, PNG_FILE = "inspect.csv", "inspect.png"
# (column, what the text table and the heat map call it)
SHOWN = [("kept_share", "kept |activation| share"),
         ("relative_l2", "final hidden state vs dense: relative L2"),
         ("mean_cosine", "final hidden state vs dense: mean cosine")]


def grid(rows: list[InspectRow], column: str, split: str) -> tuple[list[str], list[int],
                                                                  np.ndarray]:
    """Layer sets (single blocks, then the configured set) × k for one split and column."""
    chosen = [r for r in rows if r.split == split]
    sets = list(dict.fromkeys(r.layers for r in sorted(chosen, key=lambda r: r.configured)))
    ks = sorted({r.top_k for r in chosen})
    values = np.full((len(sets), len(ks)), np.nan)
    for r in chosen:
        values[sets.index(r.layers), ks.index(r.top_k)] = getattr(r, column)
    return sets, ks, values


def _set_name(rows: list[InspectRow], layers: str) -> str:
    configured = any(r.configured and r.layers == layers for r in rows)
    return f"moe.layers [{layers}]" if configured else f"layer {layers}"


def text_table(rows: list[InspectRow]) -> str:
    """One block per shown column: a row per layer set, a column per (k, split)."""
    splits = list(dict.fromkeys(r.split for r in rows))
    blocks = []
    for column, title in SHOWN:
        parts = {split: grid(rows, column, split) for split in splits}
        sets, ks, _ = parts[splits[0]]
        header = ["", *(f"k={k} {split}" for k in ks for split in splits)]
        body = [[_set_name(rows, name),
                 *(f"{parts[split][2][i, j]:.3f}" for j in range(len(ks)) for split in splits)]
                for i, name in enumerate(sets)]
        widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
        lines = ["  ".join(cell.rjust(w) if c else cell.ljust(w)
                           for c, (cell, w) in enumerate(zip(line, widths)))
                 for line in [header, *body]]
        blocks.append("\n".join([title, *lines]))
    return "\n\n".join(blocks)


def write_csv(rows: list[InspectRow], path: Path) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[f.name for f in fields(InspectRow)])
        writer.writeheader()
        writer.writerows(r.to_dict() for r in rows)
    return path


def plot_heatmap(rows: list[InspectRow], path: Path) -> Path:
    """A panel per (shown column, split): layer sets down, k across, the value in each cell."""
    # no pyplot: files only, no display or global state; imported here because matplotlib is
    # the `report` extra, which emoe-inspect checks for before it converts anything
    from matplotlib.figure import Figure

    splits = list(dict.fromkeys(r.split for r in rows))
    sets, ks, _ = grid(rows, "kept_share", splits[0])
    figure = Figure(figsize=(1.2 + 1.1 * len(ks) * len(splits) + 1.5 * len(splits),
                             1.0 + 0.45 * len(sets) * len(SHOWN)))
    axes = figure.subplots(len(SHOWN), len(splits), squeeze=False)
    for row, (column, title) in enumerate(SHOWN):
        for col, split in enumerate(splits):
            _, _, values = grid(rows, column, split)
            axis = axes[row, col]
            image = axis.imshow(values, vmin=0, vmax=1, aspect="auto",
                                cmap="viridis" if column != "relative_l2" else "magma_r")
            for (i, j), value in np.ndenumerate(values):
                axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if (value < 0.5) != (column == "relative_l2")
                          else "black")
            axis.set_xticks(range(len(ks)), [f"k={k}" for k in ks], fontsize=7)
            axis.set_yticks(range(len(sets)), [_set_name(rows, s) for s in sets], fontsize=7)
            axis.set_title(f"{title} ({split} split)", fontsize=8)
            figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
