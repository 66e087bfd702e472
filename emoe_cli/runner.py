"""One experiment, top to bottom: data, model, conversion, fine-tuning, ID and OOD evaluation."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from emoe_cli.analysis.routing import record_routing, routing_splits
from emoe_cli.config import run_profile, validate
from emoe_cli.costs import ffn_parameters, seconds_per_step
from emoe_cli.data.selection import selection_record
from emoe_cli.errors import UserError
from emoe_cli.evaluation.predictions import prediction_writer
from emoe_cli.evaluation.sources import RUN_CONFIG
from emoe_cli.method import balance_loss_weight, convert, loop_hooks, moe_errors
from emoe_cli.models import load_config, resolve_weights
from emoe_cli.moe.adapters import family_of
from emoe_cli.moe.convert import check_fits
from emoe_cli.moe.export import export_dense
from emoe_cli.moe.fidelity import pooled_hidden
from emoe_cli.moe.noise import add_uniform_noise
from emoe_cli.moe.profile import check_family
from emoe_cli.moe.receipt import conversion_receipt, expert_mode, model_outputs, probe_batch
from emoe_cli.moe.serialize import save_emoe
from emoe_cli.records import RunRecord, is_main_process, write_json_atomic
from emoe_cli.tracking import NullTracker
from emoe_cli.training.checkpoint import CheckpointStore
from emoe_cli.training.fingerprint import data_fingerprint
from emoe_cli.training.loop import fit
from emoe_cli.training.lora import apply_lora_config, lora_enabled, trainable_summary
from emoe_cli.training.sampler import DomainBatchSampler, EpochShuffleSampler
from emoe_cli.training.signals import StopRequest
from emoe_cli.workloads import Workload, build_workload

log = logging.getLogger("emoe")
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
datasets.disable_progress_bars()  # tqdm bars are kept for training and evaluation
logging.getLogger("accelerate.checkpointing").setLevel(logging.WARNING)  # a line per file


def build_accelerator(trainer_cfg: DictConfig) -> Accelerator:
    if trainer_cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device='cuda' but no GPU is visible; valid here: auto, cpu")
    # Hydra's basic launcher runs a sweep's jobs in one process, and accelerate keeps the first
    # job's precision process-wide; clear it (not the distributed state) so each job has its own.
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=trainer_cfg.device == "cpu",
                       mixed_precision=MIXED_PRECISION[trainer_cfg.precision],
                       gradient_accumulation_steps=trainer_cfg.gradient_accumulation_steps)


def checkpoint_store(cfg: DictConfig, record: RunRecord, data) -> CheckpointStore | None:
    """The run's checkpoint folder (keyed by its identity, so the same command finds it),
    tied to the fingerprint of the data it trains and selects on."""
    if not cfg.trainer.checkpoint:
        return None
    store = CheckpointStore(Path(cfg.trainer.checkpoint_dir).expanduser().absolute(),
                            record.extra["identity"], data_fingerprint(cfg, data))
    if not cfg.trainer.resume:
        store.remove()
    if is_main_process():  # the config that rebuilds its model, for emoe-eval
        write_json_atomic(store.folder / RUN_CONFIG, record.config)
    return store


def keep_model(cfg: DictConfig, model, workload: Workload, output_dir: str | Path | None,
               record: RunRecord, score_splits, accelerator: Accelerator) -> None:
    """`moe.save_model`: write the model (load_emoe rebuilds it). `moe.export_dense`: write it
    in the original dense layout, reload that with plain transformers and score it on ID and
    OOD (`score_splits(model) -> (id, ood)`) next to the run's own scores."""
    if not (cfg.moe.save_model or cfg.moe.export_dense):
        return
    output_dir = Path(output_dir or tempfile.mkdtemp(prefix="emoe-run-"))
    if cfg.moe.save_model:
        record.extra["saved_model"] = str(save_emoe(model, output_dir / "model",
                                                   workload.processor))
    if cfg.moe.export_dense:
        path = export_dense(model, output_dir / "dense_model", workload.processor)
        dense = accelerator.prepare(workload.load_model(str(path)))
        id_result, ood = score_splits(dense)
        record.extra["dense_export"] = {"path": str(path), "id": {"split": cfg.task.eval_split,
                                                                  **id_result}, "ood": ood}


def keeping(writer, split: str) -> dict:
    """The scorer's `keep` argument for `split` when predictions are saved (else none)."""
    return {} if writer is None else {"keep": writer.keep(split)}


def batching(cfg: DictConfig, workload: Workload) -> dict:
    """DataLoader arguments: shuffled batches of `trainer.batch_size`, or, with
    `task.batch_per_domain`, `trainer.batch_size` rows from each training domain (DomainBed)."""
    if workload.train_groups is not None:
        return {"batch_sampler": DomainBatchSampler(workload.train_groups,
                                                    cfg.trainer.batch_size, cfg.seed)}
    return {"batch_size": cfg.trainer.batch_size,
            "sampler": EpochShuffleSampler(len(workload.data.train), cfg.seed)}


def run_experiment(cfg: DictConfig, record: RunRecord, tracker: NullTracker | None = None,
                   stop: StopRequest | None = None,
                   output_dir: str | Path | None = None) -> None:
    """Fill `record` with the run's ID/OOD results; raises on failure (the caller records it).

    Saved or exported models and sidecar files (routing.json) go under `output_dir` (a
    temporary folder for models when None).
    """
    tracker = tracker or NullTracker()
    validate(cfg)
    writer = prediction_writer(cfg, output_dir, is_main_process())  # eval.save_predictions
    accelerator = build_accelerator(cfg.trainer)
    set_seed(cfg.seed)
    weights = resolve_weights(cfg.model.name_or_path, cfg.model.get("gguf_file"),
                              cfg.model.get("missing_hint"))
    record.extra["weights"] = weights
    if cfg.moe.enabled:  # fail before any heavy work
        model_config = load_config(weights)
        with moe_errors():
            check_fits(model_config, cfg.moe.num_experts, cfg.moe.layers)
        family = family_of(getattr(model_config, "model_type", None))
        if family is not None:
            try:
                check_family(run_profile(cfg), family)
            except ValueError as error:
                raise UserError(str(error)) from None
    workload = build_workload(cfg, weights)
    data, collate, evaluate = workload.data, workload.collate, workload.evaluate
    record.extra.update(workload.record_extra)
    if data.skipped_rows:
        record.extra["skipped_rows"] = data.skipped_rows
    if getattr(data, "missing_ood", None):  # OOD sets skipped as absent (data.ood_missing)
        record.extra["ood_missing"] = data.missing_ood
    model = workload.load_model(weights)
    add_uniform_noise(model, cfg.moe.get("noise_lambda", 0.0), seed=cfg.seed)  # NoisyTune

    started = time.perf_counter()
    if cfg.moe.enabled:  # convert, prove k = N still gives the dense outputs, measure k
        probe = probe_batch(data.train, collate, cfg.moe.receipt_batch_size)
        dense_outputs, dense_hidden = model_outputs(model, probe), pooled_hidden(model, probe)
        convert(model, cfg)
        with moe_errors():
            record.extra["conversion_receipt"] = conversion_receipt(
                model, probe, dense_outputs, cfg.moe.receipt_tolerance, dense_hidden).to_dict()
    record.timing["convert"] = time.perf_counter() - started
    record.extra["ffn_params"] = ffn_parameters(model)
    if lora_enabled(cfg):
        model = apply_lora_config(model, cfg.lora)
        record.extra["lora"] = trainable_summary(model)

    # Its own generator: starting an iterator then draws no numbers from the global RNG that
    # dropout uses, so a run resumed mid-epoch repeats the uninterrupted run exactly.
    train_loader = DataLoader(data.train, **batching(cfg, workload),
                              generator=torch.Generator().manual_seed(cfg.seed),
                              collate_fn=collate, num_workers=cfg.trainer.num_workers)

    def eval_loader(split):
        return DataLoader(split, batch_size=cfg.trainer.eval_batch_size, collate_fn=collate,
                          num_workers=cfg.trainer.num_workers)

    model, train_loader, id_loader = accelerator.prepare(model, train_loader,
                                                         eval_loader(data.validation))
    train_as, eval_as = cfg.moe.get("train_as", "emoe"), cfg.moe.get("eval_as", "emoe")
    select_loader = id_loader if data.selection is None else accelerator.prepare(
        eval_loader(data.selection))  # data.selection=heldout: dev only reports

    def evaluate_for_selection():
        with expert_mode(model, eval_as):
            return evaluate(model, select_loader, accelerator, "select eval")

    checkpoints = checkpoint_store(cfg, record, data)
    resumable = checkpoints.latest() if checkpoints is not None else None
    if resumable is not None:
        record.extra["resumed_from"] = str(resumable)
    with expert_mode(model, train_as):
        result = fit(model, train_loader, evaluate_for_selection, accelerator, cfg.trainer,
                     tracker, loop_hooks(accelerator.unwrap_model(model), balance_loss_weight(cfg)),
                     checkpoints=checkpoints,
                     stop=stop, slow_lr_scale=cfg.lora.get("slow_lr_scale", 1.0)
                     if lora_enabled(cfg) else 1.0)
    record.epochs, record.best_epoch = result.epochs, result.best_epoch
    if data.selection is None and writer is None:
        reported = result.best_eval
    else:  # data.selection=heldout: the held-out part chose the epoch; dev only reports.
        # Saved predictions: the best weights scored again, the file and the metrics at once.
        with expert_mode(model, eval_as):
            reported = evaluate(model, id_loader, accelerator, "ID eval",
                                **keeping(writer, "id"))
    record.id = {"split": cfg.task.eval_split, **reported}
    record.extra.update(selection_record(cfg.data, result.best_eval))
    record.timing["train"] = result.train_seconds
    record.extra["seconds_per_step"] = seconds_per_step(result.train_seconds, result.epochs)

    ood_loaders = {name: accelerator.prepare(eval_loader(split))
                   for name, split in data.ood.items()}

    def score_ood(net, saving=None):
        return {name: evaluate(net, loader, accelerator, f"OOD {name}",
                               data.prediction_maps.get(name), **keeping(saving, f"ood.{name}"))
                for name, loader in ood_loaders.items()}

    started = time.perf_counter()
    with expert_mode(model, eval_as):
        record.ood = score_ood(model, writer)
    if writer is not None:
        record.extra["predictions"] = writer.record()
    record.timing["eval"] = result.eval_seconds + time.perf_counter() - started
    if OmegaConf.select(cfg, "analysis.routing", default=False) and cfg.moe.enabled and output_dir:
        record.extra["routing_file"] = record_routing(
            model, routing_splits(data, eval_loader, cfg), output_dir, accelerator.device).name
    keep_model(cfg, accelerator.unwrap_model(model), workload, output_dir, record,
               lambda net: (evaluate(net, id_loader, accelerator, "dense ID"),
                            score_ood(net)), accelerator)
    if checkpoints is not None and not cfg.trainer.keep_checkpoint:
        checkpoints.remove()  # finished: nothing left to resume
    tracker.summary({"id/score": record.id["score"],
                     **{f"ood/{k}/score": v["score"] for k, v in record.ood.items()}})
