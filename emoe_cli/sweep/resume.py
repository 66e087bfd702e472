"""Sweep-level resume: a job whose identity already completed is skipped, not re-run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from omegaconf import DictConfig

from emoe_cli.sweep.gpus import claim_gpu
from emoe_cli.sweep.index import add_completed, find_completed, read_record
from emoe_cli.sweep.objective import sweep_objective
from emoe_cli.sweep.tally import skipped_marker


def completed_twin(sweep_cfg: DictConfig, identity: str, multirun: bool) -> Path | None:
    """The results.json of an earlier completed run with this identity, when skipping applies.

    Only sweeps skip: a single `emoe-run` always runs, so re-running one by hand still works.
    """
    if not (multirun and sweep_cfg.skip_completed):
        return None
    return find_completed(sweep_cfg.index_dir, identity)


def skip_run(twin: Path, output_dir: str | Path) -> float | None:
    """Note the skip in the job's folder and hand the earlier run's score back to the sweeper."""
    skipped_marker(output_dir, twin)
    print(f"emoe-run: skipped, already completed: {twin}", flush=True)
    return sweep_objective(read_record(twin) or {})


def remember_completed(sweep_cfg: DictConfig, identity: str, results: Path) -> None:
    add_completed(sweep_cfg.index_dir, identity, results)


def place_on_gpu(sweep_cfg: DictConfig, multirun: bool) -> None:
    """With `sweep.one_gpu_per_job`, give this multirun job a GPU of its own."""
    if multirun and sweep_cfg.get("one_gpu_per_job"):
        claim_gpu(Path(tempfile.gettempdir()) / "emoe_gpu_locks")  # per machine, like GPUs
