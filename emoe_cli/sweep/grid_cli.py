"""`emoe-grid`: print the runs a multirun would launch, and how many, without running them.

    emoe-grid experiment=glue_bert_base            # the 216 runs of one preset
    emoe-grid experiment=glue_bert_base task=rte   # a slice (command-line values win)
    emoe-grid --status experiment=quickstart seed=0,1,2   # which are already completed
    emoe-grid --all                                # every grid preset; the paper's total
    emoe-grid --reindex /scratch/old_sweeps        # count runs copied from elsewhere as done
"""

from __future__ import annotations

import argparse
import sys

from hydra.errors import HydraException
from omegaconf import OmegaConf

from emoe_cli.config.checks import check_group_choices
from emoe_cli.errors import warnings_to_stderr
from emoe_cli.sweep.identity import run_identity
from emoe_cli.sweep.index import find_completed, reindex
from emoe_cli.sweep.plan import grid_sizes, job_config, planned_runs, sweep_config


def split_fixed(jobs: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """Overrides shared by every job, and what varies per job (for a readable listing)."""
    fixed = [o for o in jobs[0] if all(o in job for job in jobs)] if jobs else []
    return fixed, [[o for o in job if o not in fixed] for job in jobs]


def completed(job: list[str]) -> bool:
    """Whether the index already holds a completed run with this job's identity."""
    cfg = job_config(job)
    identity = run_identity(OmegaConf.to_container(cfg, resolve=True), cfg.sweep.identity_ignore)
    return find_completed(cfg.sweep.index_dir, identity) is not None


def print_plan(overrides: list[str], status: bool) -> None:
    jobs = planned_runs(overrides)
    fixed, varying = split_fixed(jobs)
    print(f"fixed: {' '.join(fixed) or '-'}")
    done = 0
    for number, (job, shown) in enumerate(zip(jobs, varying)):
        mark = ""
        if status:
            finished = completed(job)
            done += finished
            mark = "done   " if finished else "to run "
        print(f"{number:5d}  {mark}{' '.join(shown)}")
    tail = f" ({done} already completed, {len(jobs) - done} to run)" if status else ""
    print(f"{len(jobs)} runs{tail}")


def print_all() -> None:
    """The paper's grids with their total, then the extra grids (outside the paper's count)."""
    sizes = grid_sizes()
    for paper, heading, total in ((True, "grids from the paper's tables", "paper total"),
                                  (False, "extra grids (not in the paper's count)",
                                   "extra total")):
        grids = {name: grid for name, grid in sizes.items() if grid.paper == paper}
        print(f"{heading}:")
        for name, grid in grids.items():
            print(f"  {name:28s} {grid.runs:5d}  {grid.source}")
        print(f"{total:30s} {sum(grid.runs for grid in grids.values()):5d}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="emoe-grid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="count every grid preset")
    parser.add_argument("--status", action="store_true",
                        help="mark runs whose identity already completed (slower: composes each)")
    parser.add_argument("--reindex", nargs="+", metavar="DIR",
                        help="add every completed results.json under DIR to the index")
    parser.add_argument("overrides", nargs="*", help="as for emoe-run --multirun")
    args = parser.parse_args(argv)
    warnings_to_stderr("emoe-grid")  # a damaged index entry or record is one line
    problem = check_group_choices(args.overrides)
    if problem:
        print(f"emoe-grid: error: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        if args.reindex:
            index_dir = sweep_config(args.overrides).sweep.index_dir
            print(f"{reindex(index_dir, args.reindex)} completed runs indexed in {index_dir}")
            return
        print_all() if args.all else print_plan(args.overrides, args.status)
    except HydraException as error:
        print(f"emoe-grid: error: {str(error).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
