"""Turn the numeric tables into what people read: Markdown, LaTeX (scores ×100) and CSV."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

SCALE = 100  # scores are fractions in records; papers print percentages
TITLES = {
    "summary": "ID score per task (mean ± std over seeds at the best learning rate, ×100)",
    "cells": "Cells: selected learning rate, rates tried, seeds (×100)",
    "paired": "Method − dense, paired by seed (points, 95% bootstrap CI)",
    "ingredients": "What each ingredient is worth: arm − reference, paired by seed (points, "
                   "95% bootstrap CI)",
}


def _num(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.{digits}f}")


def mean_std(mean: float, std: float, n: int | None = None) -> str:
    text = f"{_num(SCALE * mean)} ± {_num(SCALE * std)}"
    return text if n is None else f"{text} (n={n})"


def _params(value: float) -> str:
    return "–" if math.isnan(value) else f"{value / 1e6:.2f}M"


def _ratio(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}×"


def method_label(method: str, variant: str) -> str:
    """`emoe`, or `emoe (moe.top_k=8)` when the row's settings differ from another's."""
    return f"{method} ({variant})" if variant else method


def _row_label(frame: pd.DataFrame) -> list[str]:
    """Model and method (with its variant); the selection rule only when the table mixes
    several."""
    mixed = frame["selection"].nunique() > 1
    return [f"{m} · {method_label(meth, var)}" + (f" ({sel})" if mixed else "")
            for m, sel, meth, var in zip(frame["model"], frame["selection"], frame["method"],
                                         frame["variant"])]


def summary_view(cell_table: pd.DataFrame, summary_table: pd.DataFrame) -> pd.DataFrame:
    """Rows model · method; a column per task with mean ± std (n); averages; costs."""
    tasks = sorted(cell_table["task"].unique())
    view = pd.DataFrame({"model · method": _row_label(summary_table)})
    lookup = cell_table.set_index(["model", "selection", "method", "variant", "task"])
    for task in tasks:
        texts = []
        for _, row in summary_table.iterrows():
            key = (row["model"], row["selection"], row["method"], row["variant"], task)
            cell = lookup.loc[key] if key in lookup.index else None
            texts.append("–" if cell is None else mean_std(cell["id_mean"], cell["id_std"],
                                                           int(cell["n"])))
        view[task] = texts
    view["tasks"] = summary_table["tasks"].astype(int)  # averages over different sets differ
    view["ID avg"] = [_num(SCALE * v) for v in summary_table["id_avg"]]
    view["OOD avg"] = [_num(SCALE * v) for v in summary_table["ood_avg"]]
    if "ood_rank" in summary_table:  # the paper's average Friedman rank (lower is better)
        view["OOD rank"] = [_num(v) for v in summary_table["ood_rank"]]
    view["active FFN params/token"] = [_params(v) for v in summary_table["active_params"]]
    view["step time vs dense"] = [_ratio(v) for v in summary_table["step_vs_dense"]]
    view["kept activation share"] = [_num(v) for v in summary_table["kept_share"]]
    view["hidden rel. L2 vs dense"] = [_num(v) for v in summary_table["hidden_relative_l2"]]
    return view


def cells_view(cell_table: pd.DataFrame) -> pd.DataFrame:
    """A row per cell: the selected rate, how many rates and seeds, ID and OOD average."""
    return pd.DataFrame({
        "model · method": _row_label(cell_table), "task": cell_table["task"],
        "best lr": [f"{v:g}" for v in cell_table["lr"]], "lrs": cell_table["lrs"],
        "n": cell_table["n"],
        "ID": [mean_std(m, s) for m, s in zip(cell_table["id_mean"], cell_table["id_std"])],
        "OOD avg": [mean_std(m, s) for m, s in zip(cell_table["ood_mean"],
                                                    cell_table["ood_std"])],
    })


def paired_view(paired_table: pd.DataFrame) -> pd.DataFrame:
    """Method − dense per cell, with the 95 % bootstrap interval, in points (×100); n is the
    seeds paired, with each side's count when some seed has no twin."""

    def diff(row, metric):
        return (f"{SCALE * row[f'{metric}_diff']:+.2f} "
                f"[{_num(SCALE * row[f'{metric}_low'])}, {_num(SCALE * row[f'{metric}_high'])}]")

    return pd.DataFrame({
        "model · method": _row_label(paired_table), "task": paired_table["task"],
        "n paired": [str(p) if p == m == d else f"{p} (of {m} and {d} dense)"
                     for p, m, d in zip(paired_table["pairs"], paired_table["n_method"],
                                        paired_table["n_dense"])],
        "Δ ID [95% CI]": [diff(r, "id") for _, r in paired_table.iterrows()],
        "Δ OOD avg [95% CI]": [diff(r, "ood_avg") for _, r in paired_table.iterrows()],
    })


def ingredients_view(table: pd.DataFrame) -> pd.DataFrame:
    """A row per (ingredient arm, reference): the paired ID and OOD-average differences."""

    def diff(row, metric):
        return (f"{SCALE * row[f'{metric}_diff']:+.2f} "
                f"[{_num(SCALE * row[f'{metric}_low'])}, {_num(SCALE * row[f'{metric}_high'])}]")

    return pd.DataFrame({
        "model": table["model"], "task": table["task"], "arm": table["ingredient"],
        "vs": table["reference"], "n paired": table["pairs"],
        "Δ ID [95% CI]": [diff(r, "id") for _, r in table.iterrows()],
        "Δ OOD avg [95% CI]": [diff(r, "ood_avg") for _, r in table.iterrows()],
    })


def to_markdown(views: dict[str, pd.DataFrame]) -> str:
    parts = [f"### {TITLES.get(name, name)}\n\n"
             + view.to_markdown(index=False, disable_numparse=True)
             for name, view in views.items() if not view.empty]
    return "\n\n".join(parts) + "\n"


def to_latex(view: pd.DataFrame) -> str:
    escaped = view.map(lambda v: str(v).replace("_", r"\_").replace("±", r"$\pm$")
                       .replace("Δ", r"$\Delta$").replace("×", r"$\times$").replace("%", r"\%")
                       .replace("–", "--"))
    escaped.columns = [str(c).replace("_", r"\_").replace("Δ", r"$\Delta$")
                       .replace("%", r"\%") for c in view.columns]
    return escaped.to_latex(index=False, escape=False)


def write_all(out: Path, numeric: dict[str, pd.DataFrame], views: dict[str, pd.DataFrame]) -> None:
    """CSV of the numbers (fractions), and Markdown + LaTeX of the readable views."""
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in numeric.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    (out / "report.md").write_text(to_markdown(views))
    for name, view in views.items():
        if not view.empty:
            (out / f"{name}.tex").write_text(to_latex(view))
