"""`emoe-report DIR...`: read every results.json below the folders, write tables and plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emoe_cli.errors import UserError, warnings_to_stderr
from emoe_cli.extras import require


def build_report(folders: list[str], out: Path, resamples: int = 10_000) -> str:
    """Write CSV, Markdown, LaTeX and figure (PNG, PDF, SVG) files to `out`; return the
    Markdown."""
    # imported here: they need the `report` extra, which main() checks for first
    from emoe_cli.report import plots, render, tables
    from emoe_cli.report.runs import flat_runs, load_runs

    runs = load_runs(folders)
    if runs.empty:
        raise UserError(f"emoe-report: no completed results.json under {', '.join(folders)}")
    cell_table = tables.cells(runs)
    summary_table = tables.summary(cell_table, tables.ood_ranks(runs))
    paired_table = tables.paired(runs, resamples)
    ingredient_table = tables.ingredients(runs, resamples)
    views = {"summary": render.summary_view(cell_table, summary_table),
             "cells": render.cells_view(cell_table),
             "paired": render.paired_view(paired_table),
             "ingredients": render.ingredients_view(ingredient_table)}
    numeric = {"runs": flat_runs(runs), "cells": cell_table, "summary": summary_table,
               "paired": paired_table}
    if not ingredient_table.empty:
        numeric["ingredients"] = ingredient_table
    render.write_all(out, numeric, views)
    plots.plot_all(cell_table, out)
    return render.to_markdown(views)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="emoe-report", description="Paper-style tables (Markdown, CSV, LaTeX) and plots "
        "from every results.json under the given folders.")
    parser.add_argument("folders", nargs="+", help="folders holding runs, searched recursively")
    parser.add_argument("--out", default="report", help="where to write (default: ./report)")
    parser.add_argument("--resamples", type=int, default=10_000,
                        help="bootstrap resamples for the paired intervals")
    args = parser.parse_args(argv)
    require("emoe-report")
    warnings_to_stderr("emoe-report")  # a skipped file is one line, not silence
    try:
        markdown = build_report(args.folders, Path(args.out), args.resamples)
    except UserError as error:
        print(f"emoe-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(markdown)
    print(f"written to {args.out}/: report.md, *.csv, *.tex, methods_*.png/.pdf/.svg")


if __name__ == "__main__":
    main()
