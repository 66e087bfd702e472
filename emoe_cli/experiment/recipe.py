"""One experiment as named steps: data, model and its conversion (with the receipt), fit,
ID and OOD evaluation, saved artefacts; each step fills the typed `RunResult`."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from emoe_cli.analysis.routing import record_routing, routing_splits
from emoe_cli.config.checks import run_profile, validate
from emoe_cli.data.selection import selection_record
from emoe_cli.errors import UserError
from emoe_cli.evaluation.predictions import prediction_writer
from emoe_cli.evaluation.sources import RUN_CONFIG
from emoe_cli.experiment.method import balance_loss_weight, convert, loop_hooks, moe_errors
from emoe_cli.models.costs import ffn_parameters, seconds_per_step
from emoe_cli.models.pretrained import load_config, resolve_weights
from emoe_cli.moe.adapters import family_of
from emoe_cli.moe.convert import check_fits
from emoe_cli.moe.export import export_dense
from emoe_cli.moe.fidelity import pooled_hidden
from emoe_cli.moe.noise import add_uniform_noise
from emoe_cli.moe.profile import check_family
from emoe_cli.moe.receipt import conversion_receipt, expert_mode, model_outputs, probe_batch
from emoe_cli.moe.serialize import save_emoe
from emoe_cli.tracking.records import UNSET, RunResult, is_main_process, write_json_atomic
from emoe_cli.tracking.trackers import NullTracker
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


class Recipe:
    """`Recipe(cfg, result, ...).run()`: the experiment, step by step; raises on failure, and
    `result` keeps what the steps before it set (the caller records it either way).

    `identity` and `config` (the resolved config) key and describe the run's checkpoints.
    Saved or exported models and sidecar files (routing.json) go under `output_dir` (a
    temporary folder for models when None).
    """

    def __init__(self, cfg: DictConfig, result: RunResult, identity: str,
                 config: dict[str, Any], tracker: NullTracker | None = None,
                 stop: StopRequest | None = None, output_dir: str | Path | None = None) -> None:
        self.cfg, self.result, self.identity, self.config = cfg, result, identity, config
        self.tracker, self.stop, self.output_dir = tracker or NullTracker(), stop, output_dir
        self.eval_as = cfg.moe.get("eval_as", "emoe")

    def run(self) -> RunResult:
        self.setup()
        self.setup_data()
        self.setup_model()
        self.setup_loaders()
        self.fit()
        self.evaluate()
        self.save()
        return self.result

    def setup(self) -> None:
        """Checks, the accelerator and the seed; a model that cannot be converted fails here,
        before any heavy work."""
        cfg = self.cfg
        validate(cfg)
        self.writer = prediction_writer(cfg, self.output_dir, is_main_process())
        self.accelerator = build_accelerator(cfg.trainer)
        set_seed(cfg.seed)
        self.weights = resolve_weights(cfg.model.name_or_path, cfg.model.get("gguf_file"),
                                       cfg.model.get("missing_hint"))
        self.result.weights = self.weights
        if cfg.moe.enabled:
            check_convertible(cfg, self.weights)

    def setup_data(self) -> None:
        """The task's data, collation and scorer (`Workload`)."""
        self.workload = workload = build_workload(self.cfg, self.weights)
        self.data = data = workload.data
        self.result.task_notes = dict(workload.record_extra)
        if data.skipped_rows:
            self.result.skipped_rows = data.skipped_rows
        if getattr(data, "missing_ood", None):  # OOD sets skipped as absent (data.ood_missing)
            self.result.ood_missing = data.missing_ood

    def setup_model(self) -> None:
        """Load the model (NoisyTune noise), convert it, prove k = N still gives the dense
        outputs and measure k (the receipt), then LoRA adapters."""
        cfg, result = self.cfg, self.result
        model = self.workload.load_model(self.weights)
        add_uniform_noise(model, cfg.moe.get("noise_lambda", 0.0), seed=cfg.seed)  # NoisyTune
        started = time.perf_counter()
        if cfg.moe.enabled:
            probe = probe_batch(self.data.train, self.workload.collate,
                                cfg.moe.receipt_batch_size)
            dense_outputs, dense_hidden = model_outputs(model, probe), pooled_hidden(model, probe)
            convert(model, cfg)
            with moe_errors():
                result.conversion_receipt = conversion_receipt(
                    model, probe, dense_outputs, cfg.moe.receipt_tolerance,
                    dense_hidden).to_dict()
        result.timing["convert"] = time.perf_counter() - started
        result.ffn_params = ffn_parameters(model)
        if lora_enabled(cfg):
            model = apply_lora_config(model, cfg.lora)
            result.lora = trainable_summary(model)
        self.model = model

    def setup_loaders(self) -> None:
        """Training batches, the ID loader, the selection loader; all prepared with the model."""
        cfg, data = self.cfg, self.data
        # Its own generator: starting an iterator then draws no numbers from the global RNG
        # that dropout uses, so a run resumed mid-epoch repeats the uninterrupted run exactly.
        train_loader = DataLoader(data.train, **batching(cfg, self.workload),
                                  generator=torch.Generator().manual_seed(cfg.seed),
                                  collate_fn=self.workload.collate,
                                  num_workers=cfg.trainer.num_workers)
        self.model, self.train_loader, self.id_loader = self.accelerator.prepare(
            self.model, train_loader, self.eval_loader(data.validation))
        self.select_loader = self.id_loader if data.selection is None else \
            self.accelerator.prepare(self.eval_loader(data.selection))  # heldout: dev reports

    def fit(self) -> None:
        """Fine-tune (resuming a checkpoint if there is one), keeping the epoch the selection
        split scores best; then the ID score of that epoch."""
        cfg, result, model, accelerator = self.cfg, self.result, self.model, self.accelerator
        checkpoints = checkpoint_store(cfg, self.identity, self.config, self.data)
        resumable = checkpoints.latest() if checkpoints is not None else None
        if resumable is not None:
            result.resumed_from = str(resumable)
        with expert_mode(model, cfg.moe.get("train_as", "emoe")):
            state = fit(model, self.train_loader, self.evaluate_for_selection, accelerator,
                        cfg.trainer, self.tracker,
                        hooks=loop_hooks(accelerator.unwrap_model(model),
                                         balance_loss_weight(cfg)),
                        checkpoints=checkpoints, stop=self.stop,
                        slow_lr_scale=cfg.lora.get("slow_lr_scale", 1.0)
                        if lora_enabled(cfg) else 1.0)
        self.checkpoints, self.eval_seconds = checkpoints, state.eval_seconds
        result.epochs, result.best_epoch = state.epochs, state.best_epoch
        if self.data.selection is None and self.writer is None:
            reported = state.best_eval
        else:  # data.selection=heldout: the held-out part chose the epoch; dev only reports.
            # Saved predictions: the best weights scored again, the file and the metrics at once.
            with expert_mode(model, self.eval_as):
                reported = self.workload.evaluate(model, self.id_loader, accelerator,
                                                  "ID eval", **keeping(self.writer, "id"))
        result.id = {"split": cfg.task.eval_split, **reported}
        chosen = selection_record(cfg.data, state.best_eval)
        result.selection, result.selection_score = chosen["selection"], chosen["selection_score"]
        result.selection_fraction = chosen.get("selection_fraction", UNSET)
        result.timing["train"] = state.train_seconds
        result.seconds_per_step = seconds_per_step(state.train_seconds, state.epochs)

    def evaluate(self) -> None:
        """Score every OOD set with the kept weights (and write their predictions)."""
        self.ood_loaders = {name: self.accelerator.prepare(self.eval_loader(split))
                            for name, split in self.data.ood.items()}
        started = time.perf_counter()
        with expert_mode(self.model, self.eval_as):
            self.result.ood = self.score_ood(self.model, self.writer)
        if self.writer is not None:
            self.result.predictions = self.writer.record()
        self.result.timing["eval"] = self.eval_seconds + time.perf_counter() - started

    def save(self) -> None:
        """Routing counts, the saved or exported model, and the finished run's checkpoints
        removed; the tracker gets the scores."""
        cfg, result, accelerator = self.cfg, self.result, self.accelerator
        if (OmegaConf.select(cfg, "analysis.routing", default=False) and cfg.moe.enabled
                and self.output_dir):
            result.routing_file = record_routing(
                self.model, routing_splits(self.data, self.eval_loader, cfg), self.output_dir,
                accelerator.device).name
        keep_model(cfg, accelerator.unwrap_model(self.model), self.workload, self.output_dir,
                   result, lambda net: (self.workload.evaluate(net, self.id_loader, accelerator,
                                                               "dense ID"),
                                        self.score_ood(net)), accelerator)
        if self.checkpoints is not None and not cfg.trainer.keep_checkpoint:
            self.checkpoints.remove()  # finished: nothing left to resume
        self.tracker.summary({"id/score": result.id["score"],
                              **{f"ood/{k}/score": v["score"] for k, v in result.ood.items()}})

    def eval_loader(self, split) -> DataLoader:
        return DataLoader(split, batch_size=self.cfg.trainer.eval_batch_size,
                          collate_fn=self.workload.collate,
                          num_workers=self.cfg.trainer.num_workers)

    def evaluate_for_selection(self) -> dict:
        with expert_mode(self.model, self.eval_as):
            return self.workload.evaluate(self.model, self.select_loader, self.accelerator,
                                          "select eval")

    def score_ood(self, net, saving=None) -> dict:
        return {name: self.workload.evaluate(net, loader, self.accelerator, f"OOD {name}",
                                             self.data.prediction_maps.get(name),
                                             **keeping(saving, f"ood.{name}"))
                for name, loader in self.ood_loaders.items()}


def check_convertible(cfg: DictConfig, weights: str) -> None:
    """The model has the layers and FFN width `moe` asks for, and its family supports the
    profile: checked from its config alone, before loading it."""
    model_config = load_config(weights)
    with moe_errors():
        check_fits(model_config, cfg.moe.num_experts, cfg.moe.layers)
    family = family_of(getattr(model_config, "model_type", None))
    if family is not None:
        try:
            check_family(run_profile(cfg), family)
        except ValueError as error:
            raise UserError(str(error)) from None


def build_accelerator(trainer_cfg: DictConfig) -> Accelerator:
    if trainer_cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device='cuda' but no GPU is visible; valid here: auto, cpu")
    # Hydra's basic launcher runs a sweep's jobs in one process, and accelerate keeps the first
    # job's precision process-wide; clear it (not the distributed state) so each job has its own.
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=trainer_cfg.device == "cpu",
                       mixed_precision=MIXED_PRECISION[trainer_cfg.precision],
                       gradient_accumulation_steps=trainer_cfg.gradient_accumulation_steps)


def checkpoint_store(cfg: DictConfig, identity: str, config: dict[str, Any],
                     data) -> CheckpointStore | None:
    """The run's checkpoint folder (keyed by its identity, so the same command finds it),
    tied to the fingerprint of the data it trains and selects on; `config` (the resolved
    config) is written beside it so that emoe-eval can rebuild the model."""
    if not cfg.trainer.checkpoint:
        return None
    store = CheckpointStore(Path(cfg.trainer.checkpoint_dir).expanduser().absolute(),
                            identity, data_fingerprint(cfg, data))
    if not cfg.trainer.resume:
        store.remove()
    if is_main_process():
        write_json_atomic(store.folder / RUN_CONFIG, config)
    return store


def keep_model(cfg: DictConfig, model, workload: Workload, output_dir: str | Path | None,
               result: RunResult, score_splits, accelerator: Accelerator) -> None:
    """`moe.save_model`: write the model (load_emoe rebuilds it). `moe.export_dense`: write it
    in the original dense layout, reload that with plain transformers and score it on ID and
    OOD (`score_splits(model) -> (id, ood)`) next to the run's own scores."""
    if not (cfg.moe.save_model or cfg.moe.export_dense):
        return
    output_dir = Path(output_dir or tempfile.mkdtemp(prefix="emoe-run-"))
    if cfg.moe.save_model:
        result.saved_model = str(save_emoe(model, output_dir / "model", workload.processor))
    if cfg.moe.export_dense:
        path = export_dense(model, output_dir / "dense_model", workload.processor)
        dense = accelerator.prepare(workload.load_model(str(path)))
        id_result, ood = score_splits(dense)
        result.dense_export = {"path": str(path), "id": {"split": cfg.task.eval_split,
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
