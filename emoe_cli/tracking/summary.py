"""The readable table printed at the end of a run."""

from __future__ import annotations

from typing import Any

from emoe_cli.tracking.records import SCORE_EXTRAS


def summary_table(record: dict[str, Any], results_path: str) -> str:
    """ID and OOD metrics of the selected epoch, one row per split, then timing."""
    rows = []
    if record.get("id"):
        rows.append((f"ID  {record['id']['split']}", record["id"]))
    rows += [(f"OOD {name}", result) for name, result in record.get("ood", {}).items()]
    names = sorted({m for _, result in rows for m in result["metrics"]})
    extras = [k for k in SCORE_EXTRAS if any(k in result for _, result in rows)]
    header = ["split", "n", *names, "score", *extras]
    table = [header] + [
        [label, str(result.get("num_examples", "")),
         *(f"{result['metrics'][m]:.4f}" if m in result["metrics"] else "-" for m in names),
         f"{result['score']:.4f}", *(f"{result[k]:.4f}" if k in result else "-" for k in extras)]
        for label, result in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    moe = record.get("moe_summary", "")
    title = (f"{record['task']} · {record['model']} · {record['method']}{moe} · "
             f"seed {record['seed']} · {record['status']}")
    if record.get("best_epoch"):
        title += f" · best epoch {record['best_epoch']}"
    timing = "  ".join(f"{k} {v:.1f}s" for k, v in record["timing"].items())
    receipt = receipt_line(record.get("conversion_receipt") or {})
    skipped = [f"OOD skipped (absent): {', '.join(record['ood_missing'])}"] \
        if record.get("ood_missing") else []
    return "\n".join([title, *lines, *receipt, *skipped, f"timing: {timing}",
                      f"record: {results_path}"])


def receipt_line(receipt: dict[str, Any]) -> list[str]:
    """What conversion kept at the chosen k (empty for dense runs and older records)."""
    if "kept_share" not in receipt:
        return []
    kept = ", ".join(f"layer {layer} {share:.2f}" for layer, share in receipt["kept_share"].items())
    return [f"conversion at k={receipt['top_k']}: kept |activation| share {kept}; final hidden "
            f"state vs dense: cosine {receipt['hidden_mean_cosine']:.3f} mean, "
            f"{receipt['hidden_worst_cosine']:.3f} worst, relative L2 "
            f"{receipt['hidden_relative_l2']:.3f}"]
