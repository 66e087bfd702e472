"""`emoe-eval`: score a saved EMoE model, a dense export or a run's checkpoint on a task's
ID and OOD sets, with no training, and record it in emoe-run's results.json shape.

`load=<folder>` names the model (see sources.py). A model that comes from a run is evaluated
under that run's config (task, data, conversion, eval batch size), with the command line's
task, data, eval and evaluation-only trainer keys on top; other keys are the run's and are
refused. Bad input is one line and exit code 2, before any output folder exists when the
problem is in the command line itself.
"""

# ruff: noqa: E402
from __future__ import annotations

from emoe_cli.engine.openmp import sleep_when_idle

sleep_when_idle()  # before anything loads torch (and with it OpenMP)

import copy
import sys
import time
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from emoe_cli.config import naming  # noqa: F401 (registers ${emoe_uid:} for folders)
from emoe_cli.errors import UserError
from emoe_cli.evaluation.sources import Source, find_source
from emoe_cli.tracking.records import (
    RESULTS_FILE,
    RunRecord,
    RunResult,
    is_main_process,
    record_result,
    save_record,
    start_record,
)

PROG = "emoe-eval"
USER_ERROR_EXIT = 2
# What may change when the model comes from a run: which data it is scored on and how.
RUN_GROUPS = ("task", "logger")
RUN_KEYS = ("task.", "data.", "eval.", "hydra.", "trainer.eval_batch_size", "trainer.device",
            "trainer.precision", "trainer.num_workers", "moe.eval_as")


def override_keys(overrides: list[str]) -> list[tuple[str, str]]:
    """(key, text) of each `key=value` override, in order ('+' and '~' stripped)."""
    return [(text.split("=", 1)[0].lstrip("+~"), text) for text in overrides
            if "=" in text and not text.startswith("-")]


def load_argument(overrides: list[str]) -> str | None:
    found = [text.split("=", 1)[1] for key, text in override_keys(overrides) if key == "load"]
    return found[-1] if found else None


def refused_override(overrides: list[str], source: Source) -> str | None:
    """The message for the first override a run's model cannot take (None if all fit)."""
    if source.run_config is None:
        return None
    for key, _ in override_keys(overrides):
        if key == "load" or key in RUN_GROUPS or key.startswith(RUN_KEYS) or key in RUN_KEYS:
            continue
        return (f"{key}: set by the run that made load={source.folder} (its config is "
                f"{source.run_record or 'the config.json beside the checkpoint'}); valid "
                f"overrides: {', '.join(g + '=' for g in RUN_GROUPS)}, "
                f"{', '.join(k + ('*' if k.endswith('.') else '') for k in RUN_KEYS)}")
    return None


def effective_config(cfg: DictConfig, source: Source, overrides: list[str]) -> DictConfig:
    """The run's config with the command line's overrides on top (else the composed one)."""
    if source.run_config is None:
        return cfg
    merged = OmegaConf.create(copy.deepcopy(source.run_config))
    keys = [key for key, _ in override_keys(overrides)]
    with open_dict(merged):
        if "task" in keys:  # a preset first, then any task.* key given with it
            merged.task = copy.deepcopy(cfg.task)
        for key in keys:
            if key not in ("load", *RUN_GROUPS) and not key.startswith("hydra."):
                OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False,
                                 force_add=True)
        merged.eval = copy.deepcopy(cfg.eval)
        merged.load = cfg.load
    return merged


def check_identity(cfg: DictConfig, source: Source) -> None:
    """A checkpoint without its run's config must be given the overrides of that run: its
    folder is named by the run's identity, which the command line must reproduce."""
    if source.kind != "checkpoint" or source.run_config is not None:
        return
    from emoe_cli.sweep.identity import run_identity

    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("load", None)
    composed = run_identity(config, cfg.sweep.identity_ignore)
    if composed != source.identity:
        raise UserError(f"load={source.folder}: a checkpoint of run {source.identity} with no "
                        f"config.json beside it, but the command line composes run {composed}; "
                        "valid: the overrides that run was started with")


def record_method(cfg: DictConfig, source: Source) -> str:
    """The run's method; a dense folder is `dense`, or `<method>_dense_export` from a run."""
    from emoe_cli.experiment.method import method_name

    method = method_name(cfg)
    if source.kind != "dense":
        return method
    return "dense" if source.run_config is None or method == "dense" else \
        f"{method}_dense_export"


def new_record(cfg: DictConfig, source: Source) -> RunRecord:
    evaluated = {"kind": source.kind, "path": str(source.folder.absolute()),
                 "run": str(source.run_record) if source.run_record else None}
    return start_record(cfg, record_method(cfg, source),
                        converted=cfg.moe.enabled and source.kind != "dense", evaluated=evaluated)


def evaluate_source(cfg: DictConfig, source: Source, record: RunRecord,
                    output_dir: str | Path) -> None:
    """Load the model `source` names and fill `record` with its ID and OOD results (with
    what was reached, should a step fail)."""
    from accelerate.utils import set_seed

    from emoe_cli.config.checks import validate
    from emoe_cli.evaluation.predictions import prediction_writer
    from emoe_cli.evaluation.scoring import score_task
    from emoe_cli.experiment.rebuild import check_labels, load_model, model_weights
    from emoe_cli.experiment.recipe import build_accelerator
    from emoe_cli.workloads import build_workload

    validate(cfg)
    check_identity(cfg, source)
    check_labels(cfg, source)
    writer = prediction_writer(cfg, output_dir, is_main_process())
    accelerator = build_accelerator(cfg.trainer)
    set_seed(cfg.seed)
    result = RunResult()
    try:
        started = time.perf_counter()
        workload = build_workload(scoring_config(cfg), model_weights(cfg, source))
        model, notes = load_model(cfg, source, workload)
        record.extra["evaluated"].update(notes)
        result.task_notes = dict(workload.record_extra)
        if getattr(workload.data, "missing_ood", None):
            result.ood_missing = workload.data.missing_ood
        result.timing["convert"] = time.perf_counter() - started
        started = time.perf_counter()
        id_result, result.ood = score_task(model, workload, cfg, accelerator, writer,
                                           emoe=source.kind != "dense")
        result.id = {"split": cfg.task.eval_split, **id_result}
        result.timing["eval"] = time.perf_counter() - started
        if writer is not None:
            result.predictions = writer.record()
    finally:
        record_result(record, result)


def scoring_config(cfg: DictConfig) -> DictConfig:
    """`cfg` for building the workload: one training row (never used; the ID and OOD sets
    are drawn independently of it, so they are the run's)."""
    trimmed = copy.deepcopy(cfg)
    with open_dict(trimmed):
        trimmed.data.max_train_samples, trimmed.data.train_fraction = 1, 1.0
        trimmed.data.selection = "dev"
    return trimmed


def finish(record: RunRecord, output_dir: str | Path) -> None:
    path = Path(output_dir) / RESULTS_FILE
    if record.status == "completed" and is_main_process():
        from emoe_cli.tracking.summary import summary_table

        evaluated = record.extra["evaluated"]
        print(summary_table(record.to_dict(), str(path)), flush=True)
        print(f"evaluated: {evaluated['kind']} {evaluated['path']}"
              + (f" ({evaluated['weights']} weights)" if "weights" in evaluated else "")
              + (f", from the run {evaluated['run']}" if evaluated["run"] else ""), flush=True)
    save_record(record, output_dir)


@hydra.main(version_base="1.3", config_path="pkg://emoe_cli.conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    try:
        source = find_source(str(cfg.load))
        cfg = effective_config(cfg, source, list(hydra_cfg.overrides.task))
    except UserError as error:  # a sweep's values are checked here, not before Hydra
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    record = new_record(cfg, source)
    exit_code = 0
    try:
        evaluate_source(cfg, source, record, output_dir)
        record.status = "completed"
    except UserError as error:
        record.status, record.error, exit_code = "failed", str(error), USER_ERROR_EXIT
        print(f"{PROG}: error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        record.status, record.error, exit_code = "interrupted", "KeyboardInterrupt", 130
    except Exception as error:
        record.status, exit_code = "failed", 1
        record.error = f"{type(error).__name__}: {error}"
        record.extra["traceback"] = traceback.format_exc()
        print(record.extra["traceback"], f"{PROG}: evaluation failed: {error}", file=sys.stderr)
    finally:
        finish(record, output_dir)
    if exit_code:
        sys.exit(exit_code)
    return record.id.get("score")


def cli() -> None:
    """Console entry point: `load=` and the overrides checked in one line (no output folder
    is made for a bad one), then Hydra."""
    overrides = sys.argv[1:]
    problem, load = None, load_argument(overrides)
    if load is None and not any(a.startswith("-") for a in overrides):
        load = ""  # find_source says it is required
    if load is not None and "," not in load:  # a sweep's list is checked per job
        try:
            problem = refused_override(overrides, find_source(load))
        except UserError as error:
            problem = str(error)
    if problem is None:
        from emoe_cli.config.checks import check_group_choices

        problem = check_group_choices(overrides)
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    main()

if __name__ == "__main__":
    cli()
