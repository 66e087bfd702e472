"""`emoe-run`: compose the Hydra config, run one experiment, always leave a results.json.

User errors (bad names, values, missing files) and explained failures (a NaN loss) end the
run with one line on stderr and a non-zero exit; SIGTERM or Ctrl-C save a checkpoint first;
any failure still writes the record with its status.
"""

# ruff: noqa: E402
from __future__ import annotations

from emoe_cli.openmp import sleep_when_idle

sleep_when_idle()  # before anything loads torch (and with it OpenMP)

import logging
import secrets
import signal
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from emoe_cli.allocator import keep_freed_memory
from emoe_cli.config import check_group_choices
from emoe_cli.errors import RunFailure, RunInterrupted, UserError
from emoe_cli.method import method_name
from emoe_cli.records import RunRecord, is_main_process, save_record
from emoe_cli.runner import run_experiment
from emoe_cli.summary import summary_table
from emoe_cli.sweep.identity import run_identity
from emoe_cli.sweep.resume import completed_twin, place_on_gpu, remember_completed, skip_run
from emoe_cli.tracking import start_tracker
from emoe_cli.training.signals import StopRequest

log = logging.getLogger("emoe")
USER_ERROR_EXIT = 2

# A few random hex digits in every output folder name, so two runs or sweeps started in the
# same second never share a folder. Cached like Hydra's ${now:}, so a sweep's jobs agree.
OmegaConf.register_new_resolver("emoe_uid", lambda: secrets.token_hex(2), use_cache=True,
                                replace=True)


def new_record(cfg: DictConfig) -> RunRecord:
    record = RunRecord(task=cfg.task.name, model=cfg.model.name, method=method_name(cfg),
                       seed=cfg.seed, config=OmegaConf.to_container(cfg, resolve=True))
    record.extra["profile"] = OmegaConf.select(cfg, "profile.name", default="clean")
    if cfg.moe.enabled:
        record.extra["moe_summary"] = (f" (N={cfg.moe.num_experts}, k={cfg.moe.top_k}, "
                                       f"layers {cfg.moe.layers})")
    return record


def run(cfg: DictConfig, output_dir: str | Path, multirun: bool = False) -> float | None:
    """Run one experiment and record it; returns the ID score (for Hydra sweepers)."""
    record = new_record(cfg)
    identity = record.extra["identity"] = run_identity(record.config, cfg.sweep.identity_ignore)
    twin = completed_twin(cfg.sweep, identity, multirun)
    if twin is not None:
        return skip_run(twin, output_dir)
    place_on_gpu(cfg.sweep, multirun)
    tracker, stop = None, StopRequest()
    exit_code = 0
    try:
        keep_freed_memory()
        tracker = start_tracker(cfg.logger, record.config,
                                name=f"{record.task}-{record.model}-{record.method}-s{record.seed}",
                                tags=[record.task, record.method, record.model],
                                output_dir=str(output_dir))
        with stop:
            run_experiment(cfg, record, tracker, stop, output_dir)
        record.status = "completed"
    except UserError as error:
        record.status, record.error, exit_code = "failed", str(error), USER_ERROR_EXIT
        print(f"emoe-run: error: {error}", file=sys.stderr)
    except RunFailure as error:
        record.status, record.error, exit_code = "failed", str(error), 1
        print(f"emoe-run: run failed: {error}", file=sys.stderr)
    except RunInterrupted as stopped:
        record.status, record.error = "interrupted", str(stopped)
        exit_code = 128 + getattr(signal, stopped.signal_name)
        print(f"emoe-run: {stopped}", file=sys.stderr)
    except (KeyboardInterrupt, SystemExit) as stopped:  # a second Ctrl-C, or a launcher's exit
        record.status, record.error, exit_code = "interrupted", type(stopped).__name__, 130
        raise
    except Exception as error:
        record.status, exit_code = "failed", 1
        record.error = f"{type(error).__name__}: {error}"
        record.extra["traceback"] = traceback.format_exc()
        if not multirun:
            raise
        print(record.extra["traceback"], f"emoe-run: run failed, the sweep goes on: {error}",
              file=sys.stderr)  # one failing job never stops the others
    finally:
        path = save_record(record, output_dir)
        if tracker is not None:
            tracker.finish(exit_code=exit_code)
        if record.status == "completed" and is_main_process():  # once per multi-GPU run
            remember_completed(cfg.sweep, identity, path)
            print(summary_table(record.to_dict(), str(path)))
    if record.status == "interrupted":
        stop.pass_on()  # under submitit: requeue this job; it resumes from the checkpoint
    if exit_code and (not multirun or record.status == "interrupted"):
        sys.exit(exit_code)  # in a sweep, a stop request ends the sweep too
    return record.id.get("score")


@hydra.main(version_base="1.3", config_path="pkg://emoe_cli.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    return run(cfg, hydra_cfg.runtime.output_dir, multirun=hydra_cfg.mode == RunMode.MULTIRUN)


def cli() -> None:
    """Console entry point: reject unknown presets in one line, then hand over to Hydra."""
    problem = check_group_choices(sys.argv[1:])
    if problem:
        print(f"emoe-run: error: {problem}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    main()


if __name__ == "__main__":
    cli()
