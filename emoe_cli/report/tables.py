"""The paper's protocol on a table of runs: per cell, the learning rate with the best mean ID
score, then mean ± std over seeds at that rate; paired per-seed differences against dense."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emoe_cli.report.stats import bootstrap_ci

CELL = ["model", "selection", "task", "method"]
BASELINE = "dense"


def best_lr(group: pd.DataFrame) -> float:
    """The learning rate whose mean selection score over seeds is highest (ties: the smaller).

    The selection score is the dev (ID) score under the paper's rule, the held-out score
    under `data.selection=heldout`.
    """
    means = group.groupby("lr")["select"].mean().sort_index()
    return float(means.idxmax())


def at_best_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """Only the runs at each cell's selected learning rate."""
    chosen = runs.groupby(CELL)[["lr", "select"]].apply(best_lr).rename("best_lr")
    merged = runs.join(chosen, on=CELL)
    return merged[merged["lr"] == merged["best_lr"]].drop(columns="best_lr")


def cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, selection, task, method): mean ± std over seeds, n, costs, and
    what conversion kept before training (`kept_share`, `hidden_relative_l2`: NaN for dense).

    `std` is the sample standard deviation (NaN with one seed); `lrs` counts the learning
    rates tried, so an incomplete grid is visible next to `n`.
    """
    selected = at_best_lr(runs)
    grouped = selected.groupby(CELL)
    table = pd.DataFrame({
        "lr": grouped["lr"].first(), "lrs": runs.groupby(CELL)["lr"].nunique(),
        "n": grouped["seed"].count(),
        "id_mean": grouped["id"].mean(), "id_std": grouped["id"].std(),
        "ood_mean": grouped["ood_avg"].mean(), "ood_std": grouped["ood_avg"].std(),
        "active_params": grouped["active_params"].mean(),
        "step_seconds": grouped["step_seconds"].mean(),
        "kept_share": grouped["kept_share"].mean(),
        "hidden_relative_l2": grouped["hidden_relative_l2"].mean(),
    }).reset_index()
    dense = table[table["method"] == BASELINE].set_index(["model", "selection", "task"])
    base_step = table.join(dense["step_seconds"].rename("dense_step"),
                           on=["model", "selection", "task"])["dense_step"]
    table["step_vs_dense"] = table["step_seconds"] / base_step
    return table


def summary(cell_table: pd.DataFrame) -> pd.DataFrame:
    """The paper's wide table: a row per (model, selection, method), ID mean per task, then
    the ID and OOD averages over tasks (of the per-task means) and the cost columns."""
    keys = ["model", "selection", "method"]
    wide = cell_table.pivot_table(index=keys, columns="task", values="id_mean")
    grouped = cell_table.groupby(keys)
    wide["id_avg"] = grouped["id_mean"].mean()
    wide["ood_avg"] = grouped["ood_mean"].mean()
    wide["tasks"] = grouped["task"].nunique()
    wide["active_params"] = grouped["active_params"].mean()
    wide["step_vs_dense"] = grouped["step_vs_dense"].mean()
    wide["kept_share"] = grouped["kept_share"].mean()
    wide["hidden_relative_l2"] = grouped["hidden_relative_l2"].mean()
    wide.columns.name = None
    return wide.reset_index()


def paired(runs: pd.DataFrame, resamples: int = 10_000) -> pd.DataFrame:
    """Per-seed differences (method − dense) at each side's selected learning rate.

    Seeds pair up because a seed fixes the data order and initialisation of the head for
    both; the bootstrap resamples seeds (95 % percentile interval).
    """
    selected = at_best_lr(runs)
    keys = ["model", "selection", "task"]
    dense = selected[selected["method"] == BASELINE].set_index([*keys, "seed"])
    rows = []
    for cell, group in selected[selected["method"] != BASELINE].groupby(CELL):
        joined = group.join(dense[["id", "ood_avg"]], on=[*keys, "seed"], rsuffix="_dense",
                            how="inner")
        if joined.empty:
            continue
        row = dict(zip(CELL, cell), pairs=len(joined))
        for metric in ("id", "ood_avg"):
            diffs = (joined[metric] - joined[f"{metric}_dense"]).to_numpy(dtype=float)
            low, high = bootstrap_ci(diffs, resamples)
            row.update({f"{metric}_diff": float(np.mean(diffs)), f"{metric}_low": low,
                        f"{metric}_high": high})
        rows.append(row)
    columns = [*CELL, "pairs", "id_diff", "id_low", "id_high", "ood_avg_diff", "ood_avg_low",
               "ood_avg_high"]
    return pd.DataFrame(rows, columns=columns)
