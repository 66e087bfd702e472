"""The loop's optimiser, schedule and evaluation cadence (`trainer.optimizer`,
`trainer.lr_scheduler`, `trainer.eval_every_steps`) on a tiny model."""

import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from emoe_cli.tracking.trackers import NullTracker
from emoe_cli.training.loop import build_optimizer, fit
from tests.helpers import compose_config


class Regressor(torch.nn.Module):
    """y = w·x + b, returning an object with `.loss` as transformers models do."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x, y):
        return SimpleNamespace(loss=torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y))


class Recorder(NullTracker):
    def __init__(self):
        self.rates = []

    def log(self, values, step=None):
        if "train/lr" in values:
            self.rates.append(values["train/lr"])


def trainer(**overrides):
    cfg = compose_config(["trainer.lr=0.1", "trainer.early_stop_patience=0"]).trainer
    return OmegaConf.merge(cfg, overrides)


def run(trainer_cfg, batches=10):
    torch.manual_seed(0)
    data = [{"x": torch.randn(4), "y": torch.randn(())} for _ in range(batches)]
    loader = DataLoader(data, batch_size=1)
    accelerator = Accelerator(cpu=True)
    model = Regressor()
    model, loader = accelerator.prepare(model, loader)
    calls = []

    def evaluate():
        calls.append(1)
        return {"metrics": {"m": len(calls)}, "score": -abs(len(calls) - 2)}

    tracker = Recorder()
    state = fit(model, loader, evaluate, accelerator, trainer_cfg, tracker)
    return state, tracker.rates, len(calls)


def test_adam_puts_its_l2_decay_on_every_parameter_adamw_spares_biases():
    model = Regressor()
    adam = build_optimizer(model, trainer(optimizer="adam", weight_decay=1e-4))
    assert type(adam) is torch.optim.Adam
    assert {g["weight_decay"] for g in adam.param_groups} == {1e-4}
    adamw = build_optimizer(model, trainer(optimizer="adamw", weight_decay=1e-4))
    assert type(adamw) is torch.optim.AdamW
    decay = {g["params"][0].ndim: g["weight_decay"] for g in adamw.param_groups}
    assert decay == {2: 1e-4, 1: 0.0}  # the weight decays, the bias does not


@pytest.mark.parametrize("schedule", ["cosine", "constant", "linear"])
def test_the_learning_rate_follows_the_named_schedule(schedule):
    _, rates, _ = run(trainer(lr_scheduler=schedule, max_steps=10, warmup_ratio=0.0))
    # after step s (1..10) of 10: cosine 0.1·(1 + cos(π s / 10)) / 2, linear 0.1·(10 − s) / 10
    expected = {"cosine": [0.05 * (1 + math.cos(math.pi * s / 10)) for s in range(1, 11)],
                "constant": [0.1] * 10,
                "linear": [0.1 * (10 - s) / 10 for s in range(1, 11)]}[schedule]
    assert rates == pytest.approx(expected, abs=1e-9)


def test_eval_every_steps_evaluates_across_epochs_and_at_the_end():
    state, _, calls = run(trainer(eval_every_steps=4, max_steps=25))  # 10 batches an epoch
    assert [entry["step"] for entry in state.epochs] == [4, 8, 12, 16, 20, 24, 25]
    assert [entry["epoch"] for entry in state.epochs] == [1, 1, 2, 2, 2, 3, 3]
    assert calls == 7 and state.best_epoch == 2 and state.step == 25  # score peaks at call 2


def test_without_eval_every_steps_each_epoch_is_evaluated_once():
    state, _, calls = run(trainer(max_steps=25))
    assert [entry["step"] for entry in state.epochs] == [10, 20, 25] and calls == 3
    assert state.best_epoch == 2


def test_an_evaluation_at_the_last_step_is_not_repeated():
    state, _, calls = run(trainer(eval_every_steps=5, max_steps=20))
    assert [entry["step"] for entry in state.epochs] == [5, 10, 15, 20] and calls == 4


def test_domain_batches_take_the_same_share_of_every_domain():
    from emoe_cli.training.sampler import DomainBatchSampler

    domains = [0] * 10 + [2] * 7 + [3] * 25
    sampler = DomainBatchSampler(domains, per_domain=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7 // 3  # the smallest domain fills two steps
    for batch in batches:
        assert [domains[i] for i in batch] == [0] * 3 + [2] * 3 + [3] * 3
    again = DomainBatchSampler(domains, per_domain=3, seed=1)
    assert list(again) == batches
    again.set_epoch(1)
    assert list(again) != batches
