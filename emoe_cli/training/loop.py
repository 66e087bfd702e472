"""The fine-tuning loop: AdamW (or Adam), a linear (or cosine, or constant) schedule,
evaluation after every epoch (or every N steps), the best evaluation kept, checkpoints to
resume from, a clean stop on SIGTERM or a NaN loss, and progress lines in the log."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import get_scheduler

from emoe_cli.errors import RunInterrupted, TrainingDiverged
from emoe_cli.tracking.records import SCORE_EXTRAS
from emoe_cli.tracking.trackers import NullTracker
from emoe_cli.training.checkpoint import CheckpointStore, TrainingState
from emoe_cli.training.progress import Progress
from emoe_cli.training.signals import StopRequest

log = logging.getLogger("emoe")


FAST_PARAMETERS = ("lora", "classifier", "score")  # at the full lr under LoRA
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


@dataclass(frozen=True)
class LoopHooks:
    """What a method adds to the loop, so that the loop knows nothing of the method.

    `extra_loss()` is added to every batch's task loss (e.g. the routers' balancing losses of
    that forward); each `after_step()` runs after every optimiser step that moves the weights
    (e.g. avg-k routers recomputed from the updated keys).
    """

    extra_loss: Callable[[], torch.Tensor | float] | None = None
    after_step: tuple[Callable[[], None], ...] = ()


def build_optimizer(model: torch.nn.Module, trainer_cfg,
                    slow_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """AdamW over trainable parameters, biases and norms without weight decay; or, with
    `trainer.optimizer=adam`, Adam with its L2 weight decay on every parameter, as DomainBed
    builds it (`Vision/domainbed/algorithms.py:323`).

    Under LoRA the official PEFT script trains adapters and the head at the learning rate
    and every other trainable parameter (routers, tuned blocks) at a tenth of it
    (`Language/search_glue_no_trainer_peft.py`, lines 617-637): `slow_lr_scale` is that
    factor, matched like the script by name parts (1.0: one learning rate for all).
    """
    kind = trainer_cfg.get("optimizer", "adamw")
    groups = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            fast = slow_lr_scale == 1.0 or any(part in name for part in FAST_PARAMETERS)
            no_decay = kind == "adamw" and parameter.ndim < 2
            groups.setdefault((fast, no_decay), []).append(parameter)
    lr = trainer_cfg.lr
    return OPTIMIZERS[kind](
        [{"params": params, "lr": lr if fast else lr * slow_lr_scale,
          "weight_decay": 0.0 if no_decay else trainer_cfg.weight_decay}
         for (fast, no_decay), params in sorted(groups.items(), key=_group_order)], lr=lr)


def _group_order(item) -> tuple[bool, bool]:
    (fast, no_decay), _ = item
    return not fast, no_decay  # fast before slow, decay before no decay


def fit(model: torch.nn.Module, train_loader: DataLoader, evaluate_epoch: Callable[[], dict],
        accelerator: Accelerator, trainer_cfg, tracker: NullTracker | None = None,
        hooks: LoopHooks = LoopHooks(), checkpoints: CheckpointStore | None = None,
        stop: StopRequest | None = None, slow_lr_scale: float = 1.0) -> TrainingState:
    """Train `model` (already prepared by `accelerator`); `evaluate_epoch` scores the ID split.

    With `checkpoints`, the state is saved after every epoch (and when `stop` is requested)
    and an existing checkpoint is resumed from, ending with the metrics an uninterrupted run
    would have. `hooks` add the method's own loss and per-step updates (`LoopHooks`).
    `slow_lr_scale` goes to `build_optimizer`. Progress goes to the `emoe` logger (every
    `trainer.log_every_steps` steps and after each epoch) and, in a terminal, to tqdm bars.
    """
    tracker = tracker or NullTracker()
    optimizer = build_optimizer(model, trainer_cfg, slow_lr_scale)
    for hook in hooks.after_step:  # on the inner optimiser: it steps only when weights move
        optimizer.register_step_post_hook(lambda *_, hook=hook: hook())
    steps_per_epoch = math.ceil(len(train_loader) / trainer_cfg.gradient_accumulation_steps)
    total_steps = trainer_cfg.max_steps or trainer_cfg.epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = get_scheduler(SCHEDULES[trainer_cfg.get("lr_scheduler", "linear")], optimizer,
                              int(trainer_cfg.warmup_ratio * total_steps), total_steps)
    every = trainer_cfg.get("eval_every_steps")  # None: evaluate after each epoch
    optimizer, scheduler = accelerator.prepare(optimizer, scheduler)

    state = TrainingState()
    if checkpoints is not None and (resumed := checkpoints.load(accelerator, state)) is not None:
        log.info("resuming from %s: epoch %d, step %d", resumed, state.epoch + 1, state.step)
    progress = Progress(total_steps, num_epochs, trainer_cfg.get("log_every_steps", 100),
                        state.step, enabled=accelerator.is_main_process)
    # console log lines go above the bars (only through handlers already there: no new ones)
    with logging_redirect_tqdm(loggers=[lg for lg in (logging.root, log) if lg.handlers]):
        for epoch in range(state.epoch, num_epochs):
            if state.finished:
                break
            started = time.perf_counter()
            model.train()
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)  # the order depends on (seed, epoch) only
            batches = (accelerator.skip_first_batches(train_loader, state.batches_done)
                       if state.batches_done else train_loader)
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{num_epochs}", leave=True,
                       initial=state.batches_done, total=len(train_loader),
                       disable=None if accelerator.is_local_main_process else True)  # None:
            # off unless stderr is a terminal (a log file, SLURM); the lines above say it all
            for batch in bar:
                with accelerator.accumulate(model):
                    loss = model(**batch).loss
                    if hooks.extra_loss is not None:
                        loss = loss + hooks.extra_loss()
                    value = loss.item()  # the step's one device sync, before weights move
                    check_finite(value, state, checkpoints)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and trainer_cfg.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(),
                                                    trainer_cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                state.epoch_losses.append(value)
                state.batches_done += 1
                progress.batch(value)
                if accelerator.sync_gradients:
                    state.step += 1
                    lr = scheduler.get_last_lr()[0]
                    bar.set_postfix(loss=f"{value:.4f}")
                    tracker.log({"train/loss": value, "train/lr": lr}, step=state.step)
                    progress.step(state.step, epoch, lr, epoch_ends=state.step >= total_steps
                                  or state.batches_done == len(train_loader))
                    if every and state.step % every == 0 and state.step < total_steps:
                        spent = evaluate_and_keep(state, epoch, model, evaluate_epoch,
                                                  accelerator, trainer_cfg, tracker)
                        started += spent  # evaluation time is not training time
                        progress.evaluated(state.step, state.epochs[-1]["score"],
                                           best_of(state))
                        if state.finished:
                            break
                    if stop is not None and stop.requested:
                        state.train_seconds += time.perf_counter() - started
                        if checkpoints is not None:
                            checkpoints.save(accelerator, state)
                        raise RunInterrupted(stop.signal_name, stopped_at(
                            f"in epoch {epoch + 1} after step {state.step}", checkpoints))
                if state.step >= total_steps:
                    break
            bar.close()
            state.train_seconds += time.perf_counter() - started
            last = state.finished or state.step >= total_steps
            evaluates = not every or (last and (not state.epochs
                                                or state.epochs[-1]["step"] != state.step))
            if evaluates:
                evaluate_and_keep(state, epoch, model, evaluate_epoch, accelerator, trainer_cfg,
                                  tracker)
            progress.epoch_end(state.step, epoch, mean(state.epoch_losses),
                               scheduler.get_last_lr()[0],
                               state.epochs[-1]["score"] if evaluates else None, best_of(state))
            state.epoch, state.batches_done, state.epoch_losses = epoch + 1, 0, []
            state.finished = state.finished or state.step >= total_steps
            if checkpoints is not None:
                checkpoints.save(accelerator, state)
            if stop is not None and stop.requested:
                raise RunInterrupted(stop.signal_name, stopped_at(f"after epoch {epoch + 1}",
                                                                  checkpoints))

    if state.best_state is not None:
        accelerator.unwrap_model(model).load_state_dict(state.best_state)
    return state


def evaluate_and_keep(state: TrainingState, epoch: int, model, evaluate_epoch, accelerator,
                      trainer_cfg, tracker) -> float:
    """Evaluate, log, keep the best weights, decide on early stopping; returns the seconds
    spent. Each evaluation adds an entry to `state.epochs`; `best_epoch` is its position."""
    started = time.perf_counter()
    evaluation = evaluate_epoch()
    model.train()
    entry = {"epoch": epoch + 1, "step": state.step,
             "train_loss": mean(state.epoch_losses),
             "metrics": evaluation["metrics"], "score": evaluation["score"],
             **{k: evaluation[k] for k in SCORE_EXTRAS if k in evaluation}}
    state.epochs.append(entry)
    tracker.log({"epoch": epoch + 1, "train/epoch_loss": entry["train_loss"],
                 "id/score": entry["score"],
                 **{f"id/{k}": v for k, v in entry["metrics"].items()}}, step=state.step)
    if state.best_eval is None or evaluation["score"] > state.best_eval["score"]:
        state.best_epoch, state.best_eval, state.stale = len(state.epochs), evaluation, 0
        state.best_state = _cpu_copy(accelerator.unwrap_model(model).state_dict())
    else:
        state.stale += 1
    patience = trainer_cfg.early_stop_patience
    state.finished = bool(patience) and state.stale >= patience
    spent = time.perf_counter() - started
    state.eval_seconds += spent
    return spent


def mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def best_of(state: TrainingState) -> tuple[float, int, int] | None:
    """The best evaluation so far: its score, epoch and step."""
    if not state.best_epoch:
        return None
    best = state.epochs[state.best_epoch - 1]
    return best["score"], best["epoch"], best["step"]


def check_finite(loss: float, state: TrainingState, checkpoints: CheckpointStore | None) -> None:
    """Stop at the first NaN/inf loss, before it reaches the weights, naming the step."""
    if math.isfinite(loss):
        return
    kept = checkpoints.latest() if checkpoints is not None else None
    raise TrainingDiverged(
        f"loss is {loss} at step {state.step + 1} (epoch {state.epoch + 1}); "
        + (f"last good checkpoint kept at {kept}" if kept else "no checkpoint was saved yet")
        + "; try a lower trainer.lr or trainer.precision=fp32")


def stopped_at(where: str, checkpoints: CheckpointStore | None) -> str:
    """Where a stop request took effect, and what a rerun resumes from."""
    if checkpoints is None:
        return where + " (checkpoints off: nothing to resume from)"
    return f"{where}, checkpoint saved to {checkpoints.current}"


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in state.items()}
