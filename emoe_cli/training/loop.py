"""The fine-tuning loop: AdamW, linear decay, evaluation after every epoch, best epoch kept."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from emoe_cli.moe import attach_router_refresh, emoe_modules
from emoe_cli.tracking import NullTracker


@dataclass
class FitResult:
    """Per-epoch history and the epoch whose ID score was best (its weights are loaded)."""

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_eval: dict | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0


def build_optimizer(model: torch.nn.Module, trainer_cfg) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; biases and norms get no weight decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": trainer_cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=trainer_cfg.lr)


def fit(model: torch.nn.Module, train_loader: DataLoader, evaluate_epoch: Callable[[], dict],
        accelerator: Accelerator, trainer_cfg, tracker: NullTracker | None = None,
        aux_loss_weight: float = 0.0) -> FitResult:
    """Train `model` (already prepared by `accelerator`); `evaluate_epoch` scores the ID split.

    With `aux_loss_weight`, the trained routers' load-balancing losses join the task loss.
    """
    tracker = tracker or NullTracker()
    moe_layers = list(emoe_modules(accelerator.unwrap_model(model)))
    optimizer = build_optimizer(model, trainer_cfg)
    attach_router_refresh(optimizer, accelerator.unwrap_model(model))
    steps_per_epoch = math.ceil(len(train_loader) / trainer_cfg.gradient_accumulation_steps)
    total_steps = trainer_cfg.max_steps or trainer_cfg.epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(trainer_cfg.warmup_ratio * total_steps), total_steps)
    optimizer, scheduler = accelerator.prepare(optimizer, scheduler)

    result, best_state, stale, step = FitResult(), None, 0, 0
    for epoch in range(num_epochs):
        started = time.perf_counter()
        model.train()
        losses = []
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{num_epochs}", leave=False,
                   disable=not accelerator.is_local_main_process)
        for batch in bar:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                if aux_loss_weight:
                    loss = loss + aux_loss_weight * balance_loss(moe_layers)
                accelerator.backward(loss)
                if accelerator.sync_gradients and trainer_cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), trainer_cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            if accelerator.sync_gradients:
                step += 1
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                tracker.log({"train/loss": losses[-1], "train/lr": scheduler.get_last_lr()[0]},
                            step=step)
            if step >= total_steps:
                break
        result.train_seconds += time.perf_counter() - started

        started = time.perf_counter()
        evaluation = evaluate_epoch()
        result.eval_seconds += time.perf_counter() - started
        entry = {"epoch": epoch + 1, "step": step,
                 "train_loss": sum(losses) / max(len(losses), 1),
                 "metrics": evaluation["metrics"], "score": evaluation["score"]}
        result.epochs.append(entry)
        tracker.log({"epoch": epoch + 1, "train/epoch_loss": entry["train_loss"],
                     "id/score": entry["score"],
                     **{f"id/{k}": v for k, v in entry["metrics"].items()}}, step=step)
        if result.best_eval is None or evaluation["score"] > result.best_eval["score"]:
            result.best_epoch, result.best_eval, stale = epoch + 1, evaluation, 0
            best_state = _cpu_copy(accelerator.unwrap_model(model).state_dict())
        else:
            stale += 1
        if trainer_cfg.early_stop_patience and stale >= trainer_cfg.early_stop_patience:
            break
        if step >= total_steps:
            break

    if best_state is not None:
        accelerator.unwrap_model(model).load_state_dict(best_state)
    return result


def balance_loss(moe_layers) -> torch.Tensor | float:
    """Sum of the load-balancing losses the trained routers left in this forward."""
    return sum(m.aux_loss for m in moe_layers if m.aux_loss is not None)


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}
