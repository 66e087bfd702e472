"""One experiment, top to bottom: data, model, conversion, fine-tuning, ID and OOD evaluation."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from emoe_cli.config import validate
from emoe_cli.data.tasks import load_task_data
from emoe_cli.errors import UserError
from emoe_cli.evaluation.evaluate import evaluate, predict
from emoe_cli.evaluation.metrics import compute_metrics, score
from emoe_cli.models import load_classifier, load_config, load_tokenizer, resolve_weights
from emoe_cli.moe import emoefy
from emoe_cli.moe.convert import check_fits
from emoe_cli.records import RunRecord
from emoe_cli.tracking import NullTracker
from emoe_cli.training.loop import fit

log = logging.getLogger("emoe")
MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
datasets.disable_progress_bars()  # tqdm bars are kept for training and evaluation


def method_name(cfg: DictConfig) -> str:
    """`dense`, or the gate's method (`emoe`, ...) with `_random` for the random-split ablation."""
    if not cfg.moe.enabled:
        return "dense"
    return cfg.gate.method + ("_random" if cfg.moe.split == "random" else "")


def convert(model: torch.nn.Module, cfg: DictConfig) -> None:
    """Apply `emoefy` with the run's MoE and gate settings."""
    with moe_errors():
        emoefy(model, num_experts=cfg.moe.num_experts, top_k=cfg.moe.top_k,
               layers=cfg.moe.layers, gate=cfg.gate.name, seed=cfg.moe.cluster_seed,
               split=cfg.moe.split, execution=cfg.moe.get("execution", "auto"),
               **gate_options(cfg.gate))


def gate_options(gate_cfg: DictConfig) -> dict:
    """The router's own options: the gate config less what the runner itself reads."""
    options = OmegaConf.to_container(gate_cfg, resolve=True)
    for key in ("name", "method", "aux_loss_weight"):
        options.pop(key, None)
    return options


@contextmanager
def moe_errors():
    """Report the method's argument errors as user errors on the `moe` keys."""
    try:
        yield
    except ValueError as error:
        raise UserError(f"moe: {error}") from error


def evaluate_ood(model, loader, accelerator, metric_names, name, map_predictions=None) -> dict:
    """Score one OOD set, mapping predicted classes into its labels first if needed (MNLI→HANS)."""
    if map_predictions is None:
        return evaluate(model, loader, accelerator, metric_names, desc=f"OOD {name}")
    predictions, labels = predict(model, loader, accelerator, desc=f"OOD {name}")
    metrics = compute_metrics(metric_names, map_predictions(predictions), labels)
    return {"metrics": metrics, "score": score(metrics), "num_examples": int(len(labels))}


def build_accelerator(trainer_cfg: DictConfig) -> Accelerator:
    if trainer_cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("trainer.device='cuda' but no GPU is visible; valid here: auto, cpu")
    return Accelerator(cpu=trainer_cfg.device == "cpu",
                       mixed_precision=MIXED_PRECISION[trainer_cfg.precision],
                       gradient_accumulation_steps=trainer_cfg.gradient_accumulation_steps)


def run_experiment(cfg: DictConfig, record: RunRecord, tracker: NullTracker | None = None) -> None:
    """Fill `record` with the run's ID/OOD results; raises on failure (the caller records it)."""
    tracker = tracker or NullTracker()
    validate(cfg)
    accelerator = build_accelerator(cfg.trainer)
    set_seed(cfg.seed)
    weights = resolve_weights(cfg.model.name_or_path)
    record.extra["weights"] = weights
    if cfg.moe.enabled:  # fail before any heavy work
        with moe_errors():
            check_fits(load_config(weights), cfg.moe.num_experts, cfg.moe.layers)
    tokenizer = load_tokenizer(weights)
    data = load_task_data(cfg.task, cfg.data, tokenizer, cfg.model.max_length)
    model = load_classifier(weights, cfg.task.num_labels, tokenizer)

    started = time.perf_counter()
    if cfg.moe.enabled:
        convert(model, cfg)
    record.timing["convert"] = time.perf_counter() - started

    collate = DataCollatorWithPadding(tokenizer)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(data.train, batch_size=cfg.trainer.batch_size, shuffle=True,
                              collate_fn=collate, generator=generator,
                              num_workers=cfg.trainer.num_workers)

    def eval_loader(split):
        return DataLoader(split, batch_size=cfg.trainer.eval_batch_size, collate_fn=collate,
                          num_workers=cfg.trainer.num_workers)

    model, train_loader, id_loader = accelerator.prepare(model, train_loader,
                                                         eval_loader(data.validation))
    metrics = list(cfg.task.metrics)
    result = fit(model, train_loader,
                 lambda: evaluate(model, id_loader, accelerator, metrics, desc="ID eval"),
                 accelerator, cfg.trainer, tracker,
                 aux_loss_weight=cfg.gate.get("aux_loss_weight", 0.0) if cfg.moe.enabled else 0.0)
    record.epochs, record.best_epoch = result.epochs, result.best_epoch
    record.id = {"split": cfg.task.eval_split, **result.best_eval}
    record.timing["train"] = result.train_seconds

    started = time.perf_counter()
    for name, split in data.ood.items():
        loader = accelerator.prepare(eval_loader(split))
        record.ood[name] = evaluate_ood(model, loader, accelerator, metrics, name,
                                        data.prediction_maps.get(name))
    record.timing["eval"] = result.eval_seconds + time.perf_counter() - started
    tracker.summary({"id/score": record.id["score"],
                     **{f"ood/{k}/score": v["score"] for k, v in record.ood.items()}})
