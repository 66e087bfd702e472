"""Token groups: a split by routing finds tokens that route alike, and changes no result."""

import pytest
import torch

from emoe_cli.engine import token_groups
from emoe_cli.engine.cost_model import HOT_COST, hot_share
from emoe_cli.engine.dispatch import group_by_expert
from emoe_cli.engine.token_groups import SPLIT_COST, split_tokens
from tests.engine.test_dispatch import D, N, _assert_same, _layer


def _two_kinds(per_kind: int) -> torch.Tensor:
    """Tokens of two kinds, interleaved: even tokens choose experts 0-3, odd ones 4-7."""
    kinds = torch.arange(2 * per_kind) % 2
    return kinds[:, None] * 4 + torch.arange(4)


def test_two_kinds_of_tokens_are_split_apart_and_each_masks_its_own_experts():
    chosen = _two_kinds(600)
    split = split_tokens(chosen, torch.ones(chosen.shape), N, 48, training=False)
    assert len(split.groups) == 2  # the second level finds nothing more to gain
    kinds = [set((chosen[group, 0] // 4).tolist()) for group in split.groups]
    assert sorted(map(sorted, kinds)) == [[0], [1]]
    assert split.counts.sum(1).tolist() == [2400, 2400]
    # Each half masks its 4 experts for all its tokens: 4 of 8 blocks at HOT_COST,
    # against every expert half-chosen (gathered or masked, both dear) without the split.
    assert split.cost == pytest.approx(HOT_COST * 4 / N + SPLIT_COST)
    whole = split_tokens(chosen, torch.ones(chosen.shape), N, 48, training=False, max_depth=0)
    assert len(whole.groups) == 1 and whole.cost > split.cost
    dispatch = group_by_expert(chosen, torch.ones(chosen.shape), N, hot_share(48, False), split)
    assert dispatch.gathered == 0
    assert sorted(block.experts for block in dispatch.blocks) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_small_batches_and_uniform_routing_stay_whole():
    chosen = _two_kinds(token_groups.MIN_GROUP_TOKENS - 1)  # halves too small to pay
    assert len(split_tokens(chosen, torch.ones(chosen.shape), N, 48, False).groups) == 1
    # Every token the same experts: nothing to separate.
    same = torch.arange(4).repeat(2000, 1)
    assert len(split_tokens(same, torch.ones(same.shape), N, 48, False).groups) == 1


def test_dropped_pairs_do_not_count_toward_a_group():
    chosen = _two_kinds(600)
    weights = torch.ones(chosen.shape)
    weights[:, 0] = 0  # every token's first choice dropped
    split = split_tokens(chosen, weights, N, 48, training=False)
    assert split.counts.sum() == 1200 * 3


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "softmax"])
def test_split_groups_give_the_masked_result(gated, weighted, monkeypatch):
    """Several groups, each with its own masked block, plus experts gathered across groups:
    the same output and gradients as the masked path."""
    monkeypatch.setattr(token_groups, "MIN_GROUP_TOKENS", 4)
    monkeypatch.setattr(token_groups, "SPLIT_COST", -1.0)  # split wherever allowed
    monkeypatch.setattr("emoe_cli.engine.strategy.hot_share",
                        lambda size, training, overhead=1.0: 0.4)
    layer = _layer(gated, bias=True, weighted=weighted)
    x = torch.randn(48, D, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        chosen, weights = layer.route(x)
    split = split_tokens(chosen, weights, N, layer.expert_size, training=True)
    dispatch = group_by_expert(chosen, weights, N, 0.4, split)
    assert len(dispatch.blocks) == 4 and dispatch.gathered > 0
    _assert_same(layer, x)
