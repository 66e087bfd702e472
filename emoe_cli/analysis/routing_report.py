"""`emoe-routing RUN_DIR`: plots and CSV tables from a run's routing.json.

Shares are fractions of a layer's selections (`count / (tokens · k)`, summing to 1 over
its experts); `load` is the share times N, so 1 is a perfectly even split. The train-vs-test
shift of a split is the total-variation distance `½ Σ_e |share_split − share_train|`:
0 when the split uses the experts exactly as the training data does, 1 when disjointly.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from emoe_cli.analysis.routing import ROUTING_FILE
from emoe_cli.errors import UserError
from emoe_cli.extras import require

USAGE_CSV, SUMMARY_CSV = "routing_usage.csv", "routing_summary.csv"
USAGE_PNG, SHIFT_PNG = "routing_usage.png", "routing_train_vs_test.png"


def load_routing(run_dir: str | Path) -> dict:
    """The routing record of a run folder (or the routing.json file itself)."""
    path = Path(run_dir)
    path = path / ROUTING_FILE if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"no {ROUTING_FILE} at {path}; valid: the output folder of a run made "
                        "with analysis.routing=true (and moe enabled)")
    try:
        payload = json.loads(path.read_text())
        payload["layers"], payload["splits"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not a routing record (expected keys 'layers' and "
                        f"'splits'): {error}") from error
    return payload


def shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def usage_rows(payload: dict) -> list[dict]:
    """One row per (split, layer, expert): its count, share and load."""
    rows = []
    for split, layers in payload["splits"].items():
        for layer, entry in layers.items():
            num_experts = payload["layers"][layer]["num_experts"]
            for expert, (count, share) in enumerate(zip(entry["counts"],
                                                        shares(entry["counts"]))):
                rows.append({"split": split, "layer": int(layer), "expert": expert,
                             "count": count, "tokens": entry["tokens"], "share": share,
                             "load": share * num_experts})
    return rows


def summary_rows(payload: dict) -> list[dict]:
    """One row per (split, layer): tokens, normalised entropy, busiest expert's load and the
    total-variation distance from the training split's usage.
    """
    train = payload["splits"].get("train", {})
    rows = []
    for split, layers in payload["splits"].items():
        for layer, entry in layers.items():
            share = shares(entry["counts"])
            num_experts = len(share)
            entropy = -sum(p * math.log(p) for p in share if p > 0)
            row = {"split": split, "layer": int(layer), "tokens": entry["tokens"],
                   "entropy": entropy / math.log(num_experts) if num_experts > 1 else 1.0,
                   "max_load": max(share) * num_experts, "tv_from_train": None}
            if layer in train:
                reference = shares(train[layer]["counts"])
                row["tv_from_train"] = 0.5 * sum(abs(a - b) for a, b in zip(share, reference))
            rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]) if rows else ["split"])
        writer.writeheader()
        writer.writerows(rows)


def plot_usage(payload: dict, path: Path) -> None:
    """Per layer: each split's load per expert, experts ordered by their training load."""
    plt = _pyplot()
    layers = sorted(payload["layers"], key=int)
    fig, axes = plt.subplots(len(layers), 1, figsize=(9, 2.6 * len(layers)), squeeze=False)
    for ax, layer in zip(axes[:, 0], layers):
        order = _expert_order(payload, layer)
        num_experts = payload["layers"][layer]["num_experts"]
        for split, entries in payload["splits"].items():
            if layer in entries:
                load = [s * num_experts for s in shares(entries[layer]["counts"])]
                ax.plot(range(num_experts), [load[e] for e in order], marker=".", label=split)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set(title=f"layer {layer}: N={num_experts}, k={payload['layers'][layer]['top_k']}",
               xlabel="expert (sorted by training load)", ylabel="load (1 = even)")
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_shift(payload: dict, path: Path) -> None:
    """Left: per layer, how far each split's expert usage is from the training data's.
    Right: per layer, each expert's share difference (test − train) for the ID split.
    """
    plt = _pyplot()
    summary = [r for r in summary_rows(payload) if r["split"] != "train" and
               r["tv_from_train"] is not None]
    layers = sorted({r["layer"] for r in summary})
    splits = list(dict.fromkeys(r["split"] for r in summary))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    width = 0.8 / max(len(splits), 1)
    for i, split in enumerate(splits):
        values = {r["layer"]: r["tv_from_train"] for r in summary if r["split"] == split}
        left.bar([x + i * width for x in range(len(layers))],
                 [values.get(layer, 0.0) for layer in layers], width, label=split)
    left.set_xticks([x + 0.4 - width / 2 for x in range(len(layers))],
                    [str(layer) for layer in layers])
    left.set(xlabel="layer", ylabel="TV distance from train usage",
             title="train vs test expert selection")
    left.legend(fontsize=7)
    test = payload["splits"].get("id", {})
    for layer in sorted(test, key=int):
        if layer in payload["splits"].get("train", {}):
            order = _expert_order(payload, layer)
            diff = [a - b for a, b in zip(shares(test[layer]["counts"]),
                                          shares(payload["splits"]["train"][layer]["counts"]))]
            right.plot(range(len(order)), [diff[e] for e in order], marker=".",
                       label=f"layer {layer}")
    right.axhline(0.0, color="grey", linewidth=0.8)
    right.set(xlabel="expert (sorted by training load)", ylabel="share: ID test − train",
              title="per-expert difference (ID split)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the two CSV tables and two PNG plots; returns their paths."""
    payload = load_routing(run_dir)
    base = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
    out = Path(out_dir) if out_dir else base / "routing"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / USAGE_CSV, usage_rows(payload))
    write_csv(out / SUMMARY_CSV, summary_rows(payload))
    plot_usage(payload, out / USAGE_PNG)
    plot_shift(payload, out / SHIFT_PNG)
    return [out / name for name in (USAGE_CSV, SUMMARY_CSV, USAGE_PNG, SHIFT_PNG)]


def _expert_order(payload: dict, layer: str) -> list[int]:
    """Experts by descending training load (or as numbered when no train split was counted)."""
    reference = payload["splits"].get("train", {}).get(layer)
    if reference is None:
        return list(range(payload["layers"][layer]["num_experts"]))
    counts = reference["counts"]
    return sorted(range(len(counts)), key=lambda e: -counts[e])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="emoe-routing", description="Plot a run's expert-selection statistics.")
    parser.add_argument("run_dir", help="a run's output folder holding routing.json")
    parser.add_argument("--out", help="where to write (default: RUN_DIR/routing)")
    args = parser.parse_args(argv)
    require("emoe-routing", ("matplotlib",))
    try:
        paths = write_report(args.run_dir, args.out)
    except UserError as error:
        print(f"emoe-routing: error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in paths:
        print(path)


if __name__ == "__main__":
    cli()
