"""The end-of-sweep tally: how many runs completed, failed, were skipped or left no record.

Jobs may run in other processes or on other machines (submitit, SLURM, joblib), so the
tally reads what each job left in its output folder instead of counting in memory.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from emoe_cli.sweep.index import read_record
from emoe_cli.tracking.records import RESULTS_FILE, write_json_atomic

log = logging.getLogger("emoe")
SKIPPED_FILE = "skipped.json"
OUTCOMES = ("completed", "failed", "interrupted", "skipped", "no record")


def job_outcome(job_dir: Path) -> str:
    """`skipped`, the status in results.json, or `no record` (a job killed before writing)."""
    if (job_dir / SKIPPED_FILE).is_file():
        return "skipped"
    record = read_record(job_dir / RESULTS_FILE)
    return record.get("status", "no record") if record else "no record"


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Each job's output folder: where Hydra left `.hydra` or the job left its outcome."""
    marks = (".hydra", RESULTS_FILE, SKIPPED_FILE)
    found = {p.parent for mark in marks for p in sweep_dir.rglob(mark)}
    return sorted(d for d in found if d != sweep_dir and "wandb" not in d.parts)


def tally(sweep_dir: str | Path) -> dict[str, int]:
    counts = Counter(job_outcome(d) for d in job_dirs(Path(sweep_dir)))
    return {name: counts.get(name, 0) for name in OUTCOMES if counts.get(name) or
            name in ("completed", "failed", "skipped")}


def format_tally(counts: dict[str, Any]) -> str:
    return "sweep tally: " + ", ".join(f"{n} {name}" for name, n in counts.items())


class SweepTally(Callback):
    """Prints the tally after a multirun, saves it as tally.json, and exits 1 if a run failed.

    Configured in conf/config.yaml under `hydra.callbacks`.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        counts = tally(sweep_dir)
        if sweep_dir.is_dir():
            write_json_atomic(sweep_dir / "tally.json", counts)
        print(format_tally(counts), flush=True)
        if counts.get("failed"):
            failed = [str(d) for d in job_dirs(sweep_dir) if job_outcome(d) == "failed"]
            print("failed runs:\n  " + "\n  ".join(failed), file=sys.stderr)
            sys.exit(1)


def skipped_marker(job_dir: str | Path, results: Path) -> None:
    """Leave a note in a skipped job's folder saying where its completed twin is."""
    write_json_atomic(Path(job_dir) / SKIPPED_FILE, {"completed_at": str(results)})


