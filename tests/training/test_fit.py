"""The training loop on a four-feature linear classifier: resuming (also from the checkpoint a
crash moved aside, and not at all under `trainer.resume=false`), early stopping, gradient
accumulation, `max_steps`, the load-balancing loss and a NaN loss, each in about a second."""

from __future__ import annotations

import copy
import math
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from emoe_cli.errors import RunInterrupted
from emoe_cli.experiment import recipe
from emoe_cli.experiment.method import loop_hooks
from emoe_cli.experiment.recipe import build_accelerator, checkpoint_store
from emoe_cli.moe import emoe_modules, emoefy
from emoe_cli.moe.layer import DenseFFN, EMoEFeedForward
from emoe_cli.moe.routers import LearnedRouter
from emoe_cli.tracking.trackers import NullTracker
from emoe_cli.training.checkpoint import CheckpointStore
from emoe_cli.training.loop import LoopHooks, fit
from emoe_cli.training.sampler import EpochShuffleSampler
from tests.conftest import tiny_bert

EXAMPLES = 24
_generator = torch.Generator().manual_seed(0)
FEATURES = torch.randn(EXAMPLES, 4, generator=_generator)
LABELS = (FEATURES[:, 0] + 0.5 * torch.randn(EXAMPLES, generator=_generator) > 0).long()
EVAL = torch.randn(16, 4, generator=_generator)
EVAL_LABELS = (EVAL[:, 0] > 0).long()


class Classifier(nn.Module):
    """`model(**batch).loss` like a transformers model; its start depends on `seed`."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(4, 2)

    def forward(self, features, labels):
        logits = self.linear(features)
        return SimpleNamespace(loss=F.cross_entropy(logits, labels), logits=logits)


def trainer(**overrides):
    values = dict(lr=0.1, epochs=3, max_steps=None, batch_size=4, gradient_accumulation_steps=1,
                  weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=1.0, early_stop_patience=0,
                  precision="fp32", device="cpu")
    return OmegaConf.create({**values, **overrides})


def collate(indices):
    index = torch.tensor(indices)
    return {"features": FEATURES[index], "labels": LABELS[index]}


def eval_loss(model) -> dict:
    """Minus the loss on a fixed set: a score that moves with every weight update."""
    with torch.no_grad():
        loss = float(model(EVAL, EVAL_LABELS).loss)
    return {"metrics": {"loss": loss}, "score": -loss}


class _Request:
    """What `StopRequest` offers the loop, without installing signal handlers."""

    signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


class StopAtStep(NullTracker):
    """Asks the loop to stop once it has logged optimiser step `step` (as SIGTERM would)."""

    def __init__(self, stop: _Request, step: int) -> None:
        self.stop, self.step = stop, step

    def log(self, values, step=None):
        if step == self.step and "train/loss" in values:
            self.stop.signal_name = "SIGTERM"


def train(model=None, checkpoints=None, stop_at=None, scores=None, seen=None, **overrides):
    """`fit` as `emoe-run` calls it; `scores` replaces the evaluation by a fixed sequence,
    and `seen` collects the weights each evaluation saw."""
    cfg = trainer(**overrides)
    accelerator = build_accelerator(cfg)
    model = model if model is not None else Classifier()
    loader = DataLoader(list(range(EXAMPLES)), batch_size=cfg.batch_size, collate_fn=collate,
                        sampler=EpochShuffleSampler(EXAMPLES, seed=0))
    model, loader = accelerator.prepare(model, loader)
    if scores is None:
        def evaluate():
            return eval_loss(model)
    else:
        sequence = iter(scores)

        def evaluate():
            if seen is not None:
                seen.append(model.linear.weight.detach().clone())
            return {"metrics": {}, "score": next(sequence)}
    request = _Request()
    tracker = StopAtStep(request, stop_at) if stop_at else NullTracker()
    state = fit(model, loader, evaluate, accelerator, cfg, tracker, checkpoints=checkpoints,
                stop=request)
    return state, model


def history(state) -> list[float]:
    """Every epoch's number, step, mean training loss and score, in one flat list."""
    return [v for e in state.epochs for v in (e["epoch"], e["step"], e["train_loss"], e["score"])]


@pytest.mark.parametrize("crash_between_renames", [False, True], ids=["saved", "crashed"])
def test_a_resumed_fit_continues_from_the_checkpoint_not_from_its_own_start(
        tmp_path, crash_between_renames):
    """Interrupted mid-epoch 2, then resumed with a model that starts elsewhere (another
    seed): only the checkpoint's weights, optimiser and history can give the uninterrupted
    run's epochs. `crashed`: the process died after the checkpoint was moved aside and
    before the new one took its place; the one moved aside is resumed from."""
    uninterrupted, _ = train()
    store = CheckpointStore(tmp_path, "run")
    with pytest.raises(RunInterrupted, match="in epoch 2 after step 8"):
        train(checkpoints=store, stop_at=8)
    if crash_between_renames:
        os.replace(store.current, store.previous)
    resumed, _ = train(model=Classifier(seed=1), checkpoints=CheckpointStore(tmp_path, "run"))
    fresh, _ = train(model=Classifier(seed=1))
    assert history(fresh) != history(uninterrupted)  # the other start does show
    assert [(e["epoch"], e["step"]) for e in resumed.epochs] == [(1, 6), (2, 12), (3, 18)]
    assert history(resumed) == pytest.approx(history(uninterrupted), rel=1e-6)


@pytest.mark.parametrize("resume", [True, False])
def test_trainer_resume_false_starts_afresh_despite_a_checkpoint(tmp_path, resume,
                                                                 monkeypatch):
    """`emoe-run`'s store for a run: with `trainer.resume=false` the interrupted run's
    checkpoint is discarded, and a model starting elsewhere (seed 1) trains from its own
    start; with `true` it ends as the interrupted run (seed 0) would have."""
    cfg = OmegaConf.create({"trainer": {"checkpoint": True, "resume": resume,
                                        "checkpoint_dir": str(tmp_path)}})
    # the same data both times (the fingerprint itself is tested in test_fingerprint.py)
    monkeypatch.setattr(recipe, "data_fingerprint", lambda cfg, data: {"training": "fixed"})
    with pytest.raises(RunInterrupted):
        train(checkpoints=checkpoint_store(cfg, "run", {}, None), stop_at=8)
    state, _ = train(model=Classifier(seed=1), checkpoints=checkpoint_store(cfg, "run", {}, None))
    expected, _ = train(model=Classifier(seed=1 if not resume else 0))
    assert history(state) == pytest.approx(history(expected), rel=1e-6)


def test_early_stopping_ends_after_patience_epochs_and_keeps_the_best_weights():
    seen = []
    state, model = train(epochs=10, early_stop_patience=2, scores=[0.5, 0.7, 0.6, 0.65, 0.9],
                         seen=seen)
    assert [e["epoch"] for e in state.epochs] == [1, 2, 3, 4]  # 2 epochs without beating 0.7
    assert state.best_epoch == 2 and len(seen) == 4
    # the weights handed back are those epoch 2 was scored with, not the last ones
    assert torch.equal(model.linear.weight, seen[1]) and not torch.equal(seen[1], seen[3])


def test_no_patience_trains_every_epoch():
    state, _ = train(epochs=4, early_stop_patience=0, scores=[0.9, 0.1, 0.1, 0.1])
    assert [e["epoch"] for e in state.epochs] == [1, 2, 3, 4] and state.best_epoch == 1


def test_accumulating_two_batches_of_four_is_one_batch_of_eight():
    """Equal-sized micro-batches: the mean of their mean losses is the big batch's loss, so
    the weights after each epoch match (same example order: it depends on the seed only)."""
    accumulated, small = train(batch_size=4, gradient_accumulation_steps=2)
    whole, big = train(batch_size=8)
    assert [e["step"] for e in accumulated.epochs] == [3, 6, 9]
    torch.testing.assert_close(small.linear.weight, big.linear.weight, rtol=1e-5, atol=1e-6)
    assert [e["score"] for e in accumulated.epochs] == pytest.approx(
        [e["score"] for e in whole.epochs], rel=1e-5)


def test_max_steps_overrides_epochs_and_ends_mid_epoch():
    state, _ = train(epochs=10, max_steps=8)
    assert [(e["epoch"], e["step"]) for e in state.epochs] == [(1, 6), (2, 8)]
    assert state.finished


class RoutedClassifier(nn.Module):
    """A learned-router EMoE layer (which leaves a load-balancing loss) before the head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        ffn = DenseFFN(w1=torch.randn(16, 4), b1=None, w2=torch.randn(4, 16), b2=None,
                       act=nn.GELU())
        self.moe = EMoEFeedForward(ffn, torch.arange(16) % 4, 1, LearnedRouter(4, 4),
                                   execution="masked")
        self.head = nn.Linear(4, 2)

    def forward(self, features, labels):
        logits = self.head(self.moe(features))
        return SimpleNamespace(loss=F.cross_entropy(logits, labels), logits=logits)


def test_the_load_balancing_loss_joins_the_task_loss():
    """With the method's loop hooks at weight 0.25, the loss trained on (and logged) is
    task + weight · balance, both worked out here by one forward of an identical model."""
    model = RoutedClassifier().train()
    task_loss = float(copy.deepcopy(model)(FEATURES, LABELS).loss.detach())
    model(FEATURES, LABELS)
    balance = float(model.moe.aux_loss.detach())
    assert balance > 0
    cfg = trainer(epochs=1)
    accelerator = build_accelerator(cfg)
    loader = DataLoader(list(range(EXAMPLES)), batch_size=EXAMPLES, collate_fn=collate)
    model, loader = accelerator.prepare(model, loader)  # one step on every example
    state = fit(model, loader, lambda: eval_loss(model), accelerator, cfg,
                hooks=loop_hooks(accelerator.unwrap_model(model), 0.25))
    assert state.epochs[0]["train_loss"] == pytest.approx(task_loss + 0.25 * balance, rel=1e-6)


def test_after_step_hooks_run_once_per_optimiser_step_with_the_weights_already_moved():
    """With two batches per step (gradient accumulation), a hook runs on every second batch,
    after the update: what avg-k routers need to recompute from their keys."""
    cfg = trainer(epochs=1, gradient_accumulation_steps=2)
    accelerator = build_accelerator(cfg)
    model = Classifier()
    loader = DataLoader(list(range(EXAMPLES)), batch_size=4, collate_fn=collate)
    model, loader = accelerator.prepare(model, loader)
    seen = []

    def hook():
        seen.append(model.linear.weight.detach().clone())

    start = model.linear.weight.detach().clone()
    state = fit(model, loader, lambda: eval_loss(model), accelerator, cfg,
                hooks=LoopHooks(after_step=(hook,)))
    assert state.step == len(seen) == 3  # 6 batches, 2 per step
    assert not torch.equal(seen[0], start) and not torch.equal(seen[1], seen[0])


def test_the_methods_after_step_hook_recomputes_avg_k_routers_from_their_keys():
    model = emoefy(tiny_bert(), num_experts=4, top_k=2, layers=[1])
    moe = next(emoe_modules(model))
    with torch.no_grad():
        moe.w1.weight.mul_(2.0)  # the keys moved, as an optimiser step moves them
    before = moe.router.keys.clone()
    hooks = loop_hooks(model, 0.0)
    assert hooks.extra_loss is None  # weight 0: no balancing loss
    for hook in hooks.after_step:
        hook()
    assert not torch.allclose(moe.router.keys, before)


def test_a_nan_loss_stops_before_the_weights_move(monkeypatch):
    from emoe_cli.errors import TrainingDiverged

    model = Classifier()
    before = model.linear.weight.detach().clone()
    with torch.no_grad():
        model.linear.bias.fill_(math.nan)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 1 .epoch 1.; no checkpoint"):
        train(model=model)
    assert torch.equal(model.linear.weight, before)
