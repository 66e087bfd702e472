"""The paper's protocol on a table of runs: per cell, the learning rate with the best mean ID
score, then mean ± std over seeds at that rate; paired per-seed differences against dense.

A cell is (model, selection, task, method, variant): its runs differ in seed and learning
rate only (`variants.py`), so an ablation's settings never average into one row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emoe_cli.report.stats import bootstrap_ci
from emoe_cli.report.variants import BASELINE

CELL = ["model", "selection", "task", "method", "variant"]
TASK = ["model", "selection", "task"]


def best_lr(group: pd.DataFrame) -> float:
    """The learning rate whose mean selection score over seeds is highest (ties: the smaller).

    The selection score is the dev (ID) score under the paper's rule, the held-out score
    under `data.selection=heldout`.
    """
    means = group.groupby("lr")["select"].mean().sort_index()
    return float(means.idxmax())


def at_best_lr(runs: pd.DataFrame, keys: list[str] = CELL) -> pd.DataFrame:
    """Only the runs at each group's selected learning rate (a group: a cell by default)."""
    chosen = runs.groupby(keys)[["lr", "select"]].apply(best_lr).rename("best_lr")
    merged = runs.join(chosen, on=keys)
    return merged[merged["lr"] == merged["best_lr"]].drop(columns="best_lr")


def cells(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (model, selection, task, method, variant): mean ± std over seeds, n,
    costs (the step time relative to the dense cell of the same setting), and what
    conversion kept before training (`kept_share`, `hidden_relative_l2`: NaN for dense).

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
        "dense_variant": grouped["dense_variant"].first(),
        "kept_share": grouped["kept_share"].mean(),
        "hidden_relative_l2": grouped["hidden_relative_l2"].mean(),
    }).reset_index()
    dense = table[table["method"] == BASELINE].set_index([*TASK, "variant"])
    base_step = table.join(dense["step_seconds"].rename("dense_step"),
                           on=[*TASK, "dense_variant"])["dense_step"]
    table["step_vs_dense"] = table["step_seconds"] / base_step
    return table


def ood_ranks(runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's average Friedman rank over OOD sets, per (model, selection, method, variant).

    On every OOD set (of every task) the rows of one model and selection rule are ranked by
    their mean score over seeds at the selected learning rate, 1 the best, ties sharing the
    mean of their places; a row's rank is the mean over the OOD sets that every row has
    (`ood_sets` counts them), so each set is a complete block as Friedman's test needs.
    """
    columns = ["model", "selection", "method", "variant", "ood_rank", "ood_sets"]
    selected = at_best_lr(runs)
    long = [{**dict(zip(CELL, key)), "ood_set": name, "score": score}
            for key, ood in zip(selected[CELL].itertuples(index=False), selected["ood"])
            for name, score in ood.items()]
    if not long:
        return pd.DataFrame(columns=columns)
    scores = pd.DataFrame(long).groupby([*CELL, "ood_set"])["score"].mean().reset_index()
    rows = []
    for (model, selection), group in scores.groupby(["model", "selection"]):
        table = group.pivot_table(index=["task", "ood_set"], columns=["method", "variant"],
                                  values="score").dropna()
        ranks = table.rank(axis=1, ascending=False, method="average")
        for (method, variant), mean_rank in ranks.mean().items():
            rows.append({"model": model, "selection": selection, "method": method,
                         "variant": variant, "ood_rank": mean_rank, "ood_sets": len(ranks)})
    return pd.DataFrame(rows, columns=columns)


def summary(cell_table: pd.DataFrame, ranks: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's wide table: a row per (model, selection, method, variant), ID mean per
    task, then the ID and OOD averages over tasks (of the per-task means), the average OOD
    Friedman rank (`ood_ranks`, when given) and the costs."""
    keys = ["model", "selection", "method", "variant"]
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
    wide = wide.reset_index()
    if ranks is not None:
        wide = wide.merge(ranks, on=keys, how="left")
    return wide


def paired_differences(joined: pd.DataFrame, suffix: str, resamples: int) -> dict:
    """Mean per-seed difference and its bootstrap interval for the ID score and the OOD
    average, from rows holding both sides (the other side's columns end in `suffix`)."""
    row = {}
    for metric in ("id", "ood_avg"):
        diffs = (joined[metric] - joined[f"{metric}{suffix}"]).to_numpy(dtype=float)
        low, high = bootstrap_ci(diffs, resamples)
        row.update({f"{metric}_diff": float(np.mean(diffs)), f"{metric}_low": low,
                    f"{metric}_high": high})
    return row


def paired(runs: pd.DataFrame, resamples: int = 10_000) -> pd.DataFrame:
    """Per-seed differences (method − dense) at each side's selected learning rate.

    Seeds pair up because a seed fixes the data order and initialisation of the head for
    both; only seeds both sides have are paired (`pairs`; `n_method` and `n_dense` say how
    many each side had), and each variant is compared with the dense cell of its own
    setting. The bootstrap resamples seeds (95 % percentile interval).
    """
    selected = at_best_lr(runs)
    dense = selected[selected["method"] == BASELINE].set_index([*TASK, "variant", "seed"])
    dense_n = dense.groupby(level=[*TASK, "variant"]).size()
    rows = []
    for cell, group in selected[selected["method"] != BASELINE].groupby(CELL):
        joined = group.join(dense[["id", "ood_avg"]], on=[*TASK, "dense_variant", "seed"],
                            rsuffix="_dense", how="inner")
        if joined.empty:
            continue
        baseline = (*cell[:3], group["dense_variant"].iloc[0])
        row = dict(zip(CELL, cell), pairs=len(joined), n_method=group["seed"].nunique(),
                   n_dense=int(dense_n[baseline]))
        rows.append({**row, **paired_differences(joined, "_dense", resamples)})
    columns = [*CELL, "pairs", "n_method", "n_dense", "id_diff", "id_low", "id_high",
               "ood_avg_diff", "ood_avg_low", "ood_avg_high"]
    return pd.DataFrame(rows, columns=columns)


INGREDIENT_REFERENCES = ("dense", "official")  # conf/ingredient/: the two rows compared with


def ingredients(runs: pd.DataFrame, resamples: int = 10_000) -> pd.DataFrame:
    """What each ingredient is worth: every arm of the `ingredient` ablation (runs whose
    config has `ablation.ingredient`) minus the `dense` arm and minus the `official` arm,
    paired by seed (only seeds both arms have; `pairs` says how many), at each arm's
    selected learning rate, with 95 % bootstrap intervals over seeds."""
    columns = [*TASK, "ingredient", "reference", "pairs", "id_diff", "id_low", "id_high",
               "ood_avg_diff", "ood_avg_low", "ood_avg_high"]
    arms = runs[runs["ingredient"].notna()]
    if arms.empty:
        return pd.DataFrame(columns=columns)
    by_arm = [*TASK, "ingredient"]
    arms = at_best_lr(arms, by_arm).set_index([*by_arm, "seed"])
    present = set(arms.index.droplevel("seed"))
    rows = []
    for (*task, ingredient), arm in arms.groupby(level=by_arm):
        for reference in INGREDIENT_REFERENCES:
            key = (*task, reference)
            if ingredient in (reference, "dense") or key not in present:
                continue
            base = arms.xs(key, level=by_arm)
            joined = arm.droplevel(by_arm).join(base[["id", "ood_avg"]], rsuffix="_ref",
                                                how="inner")
            if joined.empty:
                continue
            row = dict(zip(TASK, task), ingredient=ingredient, reference=reference,
                       pairs=len(joined))
            rows.append({**row, **paired_differences(joined, "_ref", resamples)})
    return pd.DataFrame(rows, columns=columns)
