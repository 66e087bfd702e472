"""`emoe-run`: compose the Hydra config, run one experiment, always leave a results.json.

Bad overrides and values are refused before Hydra starts (preflight.py); user errors found
later (missing files, a model that does not fit) and explained failures (a NaN loss) end the
run with one line on stderr and a non-zero exit; SIGTERM or Ctrl-C save a checkpoint first;
any failure still writes the record with its status.
"""

# ruff: noqa: E402
from __future__ import annotations

from emoe_cli.engine.openmp import sleep_when_idle

sleep_when_idle()  # before anything loads torch (and with it OpenMP)

import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from emoe_cli.config.checks import validate
from emoe_cli.config.naming import folder_method  # noqa: F401 (registers the folder resolvers)
from emoe_cli.config.preflight import exit_on_bad_command_line
from emoe_cli.engine.allocator import keep_freed_memory
from emoe_cli.experiment.method import method_name
from emoe_cli.experiment.task_wrapper import TaskWrapper
from emoe_cli.experiment.writable import require_writable
from emoe_cli.sweep.identity import run_identity
from emoe_cli.sweep.objective import sweep_objective
from emoe_cli.sweep.resume import completed_twin, place_on_gpu, remember_completed, skip_run
from emoe_cli.sweep.tally import skipped_marker
from emoe_cli.tracking.records import (
    RESULTS_FILE,
    RunRecord,
    RunResult,
    is_main_process,
    record_result,
    save_record,
    start_record,
)
from emoe_cli.tracking.summary import summary_table
from emoe_cli.tracking.trackers import start_tracker
from emoe_cli.training.lock import IdentityBusy, IdentityLock
from emoe_cli.training.signals import StopRequest

log = logging.getLogger("emoe")
BUSY_EXIT = 75  # EX_TEMPFAIL: an identical run holds the identity; try again once it ends



def run_experiment(cfg: DictConfig, record: RunRecord, tracker, stop: StopRequest,
                   output_dir: str | Path) -> None:
    """Run the recipe and put its result into `record`, the one place a result becomes the
    record: all of it, or what the recipe reached before it failed. The recipe is imported
    when a job starts (torch, transformers and peft load only then), so --help, --cfg and
    config errors answer without them."""
    from emoe_cli.experiment.recipe import Recipe

    result = RunResult()
    try:
        Recipe(cfg, result, record.extra["identity"], record.config, tracker, stop,
               output_dir).run()
    finally:
        record_result(record, result)


def new_record(cfg: DictConfig) -> RunRecord:
    return start_record(cfg, method_name(cfg), converted=cfg.moe.enabled)


def output_folders(cfg: DictConfig, output_dir: str | Path,
                   multirun: bool = False) -> dict[str, str | Path]:
    """Every folder the run writes to, by the key that sets it."""
    folders = {"hydra.sweep.dir" if multirun else "hydra.run.dir": output_dir,
               "sweep.index_dir": cfg.sweep.index_dir}
    if cfg.trainer.checkpoint:
        folders["trainer.checkpoint_dir"] = cfg.trainer.checkpoint_dir
    return folders


def identity_lock(cfg: DictConfig, identity: str, output_dir: str | Path):
    """The run's hold on its identity while it may checkpoint (see training/lock.py).

    Without checkpoints two identical runs share nothing. Only the main process locks (the
    others of a multi-process run share its checkpoint); a folder that cannot be made is left
    to the writability check, which names it.
    """
    if not (cfg.trainer.checkpoint and is_main_process()):
        return nullcontext()
    folder = Path(cfg.trainer.checkpoint_dir).expanduser().absolute()
    lock = IdentityLock(folder / f"{identity}.lock", str(Path(output_dir).absolute()))
    try:
        return lock.acquire()
    except OSError:
        return nullcontext()


def skip_busy(busy: IdentityBusy, output_dir: str | Path, multirun: bool) -> None:
    """An identical run is live: say where it records, and leave this job as skipped."""
    results = Path(busy.note) / RESULTS_FILE if busy.note else None
    print(f"emoe-run: skipped: an identical run ({busy.pid or 'another process'}) is in "
          f"progress and holds {busy.path}; its record will be {results or 'its own'}",
          file=sys.stderr, flush=True)
    if multirun:
        if results is not None:
            skipped_marker(output_dir, results)
        return None
    sys.exit(BUSY_EXIT)


def run(cfg: DictConfig, output_dir: str | Path, multirun: bool = False) -> float | None:
    """Run one experiment and record it; returns its selection score (for Hydra sweepers)."""
    record = new_record(cfg)
    identity = record.extra["identity"] = run_identity(record.config, cfg.sweep.identity_ignore)
    twin = completed_twin(cfg.sweep, identity, multirun)
    if twin is not None:
        return skip_run(twin, output_dir)
    try:
        held = identity_lock(cfg, identity, output_dir)
    except IdentityBusy as busy:
        return skip_busy(busy, output_dir, multirun)
    with held:
        twin = completed_twin(cfg.sweep, identity, multirun)  # it finished as this one began
        if twin is not None:
            return skip_run(twin, output_dir)
        return run_held(cfg, record, output_dir, multirun)


def run_held(cfg: DictConfig, record: RunRecord, output_dir: str | Path,
             multirun: bool) -> float | None:
    """`run` once the identity is this process's: train, print the outcome, then record it."""
    place_on_gpu(cfg.sweep, multirun)
    tracker, stop = None, StopRequest()
    wrapped = TaskWrapper(record, multirun)  # the status, the error line and the exit code
    try:
        with wrapped:
            require_writable(output_folders(cfg, output_dir, multirun))
            keep_freed_memory()
            tracker = start_tracker(cfg.logger, record.config,
                                    name=f"{record.task}-{record.model}-{record.method}"
                                         f"-s{record.seed}",
                                    tags={"task": record.task, "method": record.method,
                                          "model": record.model},
                                    output_dir=str(output_dir))
            with stop:
                run_experiment(cfg, record, tracker, stop, output_dir)
    finally:
        exit_code = finish(cfg, record, output_dir, tracker, wrapped.exit_code)
    if record.status == "interrupted":
        stop.pass_on()  # under submitit: requeue this job; it resumes from the checkpoint
    if exit_code and (not multirun or record.status == "interrupted"):
        sys.exit(exit_code)  # in a sweep, a stop request ends the sweep too
    return sweep_objective(record.to_dict())


def finish(cfg: DictConfig, record: RunRecord, output_dir: str | Path, tracker,
           exit_code: int) -> int:
    """Print the outcome first (so a full disk cannot lose it), then write the record.

    A completed run prints its summary and its metrics as one JSON line; a record that cannot
    be written is one line saying where and why (the earlier file, if any, stays whole), and
    the exit code becomes non-zero. Returns the exit code.
    """
    path = Path(output_dir) / RESULTS_FILE
    main = is_main_process()  # once per multi-GPU run
    completed = record.status == "completed" and main
    if completed:
        print(summary_table(record.to_dict(), str(path)))
        print(json.dumps(metrics_line(record), default=str), flush=True)
    try:
        save_record(record, output_dir)
    except OSError as error:
        completed, exit_code = False, exit_code or 1
        print(f"emoe-run: error: {path}: the record could not be written "
              f"({error.strerror or error}); "
              + ("its metrics are in the JSON line above" if record.status == "completed"
                 else f"the run ended {record.status}"), file=sys.stderr, flush=True)
    if tracker is not None:
        tracker.finish(exit_code=exit_code)
    if completed:
        try:
            remember_completed(cfg.sweep, record.extra["identity"], path)
        except OSError as error:
            print(f"emoe-run: warning: sweep.index_dir={cfg.sweep.index_dir}: not updated "
                  f"({error.strerror or error}); emoe-grid --reindex adds this run later",
                  file=sys.stderr)
    return exit_code


def metrics_line(record: RunRecord) -> dict:
    """What a completed run measured, for one machine-readable line on stdout."""
    return {"identity": record.extra["identity"], "task": record.task, "model": record.model,
            "method": record.method, "seed": record.seed, "best_epoch": record.best_epoch,
            "id": record.id, "ood": record.ood}


@hydra.main(version_base="1.3", config_path="pkg://emoe_cli.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    return run(cfg, hydra_cfg.runtime.output_dir, multirun=hydra_cfg.mode == RunMode.MULTIRUN)


def cli() -> None:
    """Console entry point: a bad override or value is one line and exit 2 before Hydra
    makes a run folder (emoe_cli/config/preflight.py), then Hydra. Nothing here loads torch until a
    job runs, so --help, --cfg, --info and completion answer at once."""
    exit_on_bad_command_line("emoe-run", sys.argv[1:], "config", validate)
    main()


if __name__ == "__main__":
    cli()
