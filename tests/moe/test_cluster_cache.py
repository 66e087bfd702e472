"""The cluster cache reads back only valid, balanced splits; anything else is redone in place."""

import logging

import pytest
import torch

from emoe_cli.moe.cluster_cache import cache_path, cached_split
from emoe_cli.moe.convert import emoe_modules, emoefy
from tests.conftest import tiny_bert

D_FF, EXPERTS = 12, 3
GOOD = torch.arange(D_FF) % EXPERTS  # 4 neurons per expert


class Clusterer:
    """A stand-in for k-means that counts how often it runs."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return GOOD.clone()


def _split(tmp_path, clusterer):
    weight = torch.ones(D_FF, 4)
    return cached_split(weight, EXPERTS, 0, 1, tmp_path, clusterer)


def _entry(tmp_path):
    return cache_path(tmp_path, torch.ones(D_FF, 4), 1, EXPERTS, 0)


def test_a_valid_entry_is_read_back_without_clustering(tmp_path, caplog):
    first = Clusterer()
    assert torch.equal(_split(tmp_path, first), GOOD) and first.calls == 1
    again = Clusterer()
    assert torch.equal(_split(tmp_path, again), GOOD) and again.calls == 0
    assert "cluster cache" not in caplog.text


def _truncated(path):
    torch.save(GOOD, path)
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize("corrupt, problem", [
    (_truncated, "cannot be read"),
    (lambda path: path.write_bytes(b""), "cannot be read"),
    (lambda path: torch.save(torch.zeros(D_FF, dtype=torch.long), path),
     "gives experts 0..12 neurons, expected 4 each"),
    (lambda path: torch.save(GOOD + 1, path), "has expert ids 1..3, expected 0..2"),
    (lambda path: torch.save(GOOD - 1, path), "has expert ids -1..1, expected 0..2"),
    (lambda path: torch.save(GOOD.float(), path), "has dtype torch.float32, expected integer"),
    (lambda path: torch.save(GOOD[:6], path), "has shape (6,), expected (12,)"),
    (lambda path: torch.save({"expert_of_neuron": GOOD}, path), "holds a dict, not a tensor"),
    (lambda path: torch.save(torch.tensor([0] * 5 + [1] * 3 + [2] * 4), path),
     "gives experts 3..5 neurons, expected 4 each"),
], ids=["truncated", "empty", "all-zero", "too-high", "negative", "float", "short", "dict",
        "unbalanced"])
def test_an_invalid_entry_is_recomputed_replaced_and_named(tmp_path, caplog, corrupt, problem):
    path = _entry(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    corrupt(path)
    clusterer = Clusterer()
    with caplog.at_level(logging.WARNING, logger="emoe"):
        assert torch.equal(_split(tmp_path, clusterer), GOOD)
    assert clusterer.calls == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(path) in warnings[0] and problem in warnings[0]
    assert torch.equal(torch.load(path, weights_only=True), GOOD)  # replaced: read back next time
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    again = Clusterer()
    assert torch.equal(_split(tmp_path, again), GOOD) and again.calls == 0


def test_a_truncated_entry_does_not_break_a_conversion(tmp_path):
    first = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0], cluster_cache=tmp_path)
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(entry.read_bytes()[:100])
    again = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0], cluster_cache=tmp_path)
    for a, b in zip(emoe_modules(first), emoe_modules(again)):
        assert torch.equal(a.expert_of_neuron, b.expert_of_neuron)
