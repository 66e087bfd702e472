"""The one question an EMoE layer asks its engine: can this routing be computed faster than by
masking, and if so, compute it.

`execution_for(name)` gives the strategy for a layer's `execution` (`masked`, `sparse`,
`auto`). A strategy plans a call from the routing (None: the layer masks) and runs the plan.
It reads the layer through `ExpertLayer`, so this package never imports `moe/`.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from emoe_cli.engine import EXECUTIONS
from emoe_cli.engine.cost_model import (
    MASKED_COST,
    fixed_cost,
    hot_share,
    overhead,
    row_multiple,
    sparse_cost,
    sparse_may_pay,
)
from emoe_cli.engine.dispatch import Dispatch, group_by_expert, sparse_ffn
from emoe_cli.engine.token_groups import split_tokens


class ExpertLayer(Protocol):
    """What the engine reads of a layer: its expert-contiguous matrices and expert dropout."""

    w1: nn.Module
    w2: nn.Module
    w_up: nn.Module | None
    act: nn.Module
    num_experts: int
    expert_size: int
    expert_dropout: float
    dropout_before: bool


class Execution(Protocol):
    """How a layer's selected experts are computed (the same function either way)."""

    name: str

    def plan(self, layer: ExpertLayer, chosen: torch.Tensor,
             weights: torch.Tensor) -> Dispatch | None:
        """A plan for this routing ([tokens, k] experts and their weights, in the dtype the
        layer computes in), or None when the layer should mask."""
        ...

    def run(self, layer: ExpertLayer, x: torch.Tensor, plan: Dispatch) -> torch.Tensor:
        """The layer's output for `x` under `plan`, `b2` added once."""
        ...


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype F.linear would compute in: autocast's when it is on, else the input's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class Masked:
    """Always mask: the dense FFN, then zero the unselected blocks (the layer does it)."""

    name = "masked"

    def plan(self, layer: ExpertLayer, chosen: torch.Tensor,
             weights: torch.Tensor) -> Dispatch | None:
        return None

    def run(self, layer: ExpertLayer, x: torch.Tensor, plan: Dispatch) -> torch.Tensor:
        raise RuntimeError("the masked execution plans nothing to run")


class Sparse:
    """Only the selected experts (`engine/dispatch.py`): always (`sparse`) or where the cost
    model (`engine/cost_model.py`) says it beats masking (`auto`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def plan(self, layer: ExpertLayer, chosen: torch.Tensor,
             weights: torch.Tensor) -> Dispatch | None:
        """Token groups (`engine/token_groups.py`), then pairs by expert; None with
        adapter-wrapped weights, or under `auto` when the modelled cost favours masking."""
        if not plain_weights(layer):
            return None
        training = torch.is_grad_enabled()
        # Where oneDNN runs the products (bf16/fp16 on CPU) pairs are padded so that their
        # shapes repeat, and gathering costs more beside its faster products.
        multiple = row_multiple(weights.dtype, weights.device)
        dearer = overhead(weights.dtype, weights.device)
        if self.name == "auto" and not self._pays(layer, chosen, training, dearer):
            return None
        # Token groups' sizes change with every batch, each a new product shape: where pairs
        # are padded, that is a kernel build per group, so one group of every token there.
        split = split_tokens(chosen, weights, layer.num_experts, layer.expert_size, training,
                             max_depth=0 if multiple > 1 else None)
        return group_by_expert(chosen, weights, layer.num_experts,
                               hot_share(layer.expert_size, training, dearer), split, multiple)

    @staticmethod
    def _pays(layer: ExpertLayer, chosen: torch.Tensor, training: bool, dearer: float) -> bool:
        """Whether the modelled sparse cost beats masking, decided on the whole batch (the
        modelled saving of a token split is optimistic)."""
        if not sparse_may_pay(chosen, layer.num_experts):
            return False
        counts = torch.bincount(chosen.reshape(-1), minlength=layer.num_experts)
        steps = fixed_cost(int((counts > 0).sum()), len(chosen), layer.w1.in_features,
                           layer.w1.out_features, layer.w_up is not None, dearer)
        cost = sparse_cost(counts / len(chosen), layer.expert_size, training, dearer) + steps
        return cost < MASKED_COST

    def run(self, layer: ExpertLayer, x: torch.Tensor, plan: Dispatch) -> torch.Tensor:
        """Only the selected experts, all in `compute_dtype` (the plan's weights too)."""
        dtype = compute_dtype(x)

        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(dtype)

        up = (None, None) if layer.w_up is None else (layer.w_up.weight, layer.w_up.bias)
        return sparse_ffn(cast(x), plan, layer.act, cast(layer.w1.weight), cast(layer.w1.bias),
                          cast(layer.w2.weight), cast(up[0]), cast(up[1]), cast(layer.w2.bias),
                          layer.expert_dropout, layer.dropout_before)


def plain_weights(layer: ExpertLayer) -> bool:
    """False when an adapter (LoRA) wraps a matrix: the sparse kernel reads raw weights, so
    such layers compute through their modules (the masked path)."""
    return all(type(m) is nn.Linear for m in (layer.w1, layer.w2, layer.w_up) if m is not None)


def execution_for(name: str) -> Execution:
    """The strategy for a layer's `execution` setting."""
    if name not in EXECUTIONS:
        raise ValueError(f"execution={name!r} is unknown; valid: {', '.join(EXECUTIONS)}")
    return Masked() if name == "masked" else Sparse(name)
