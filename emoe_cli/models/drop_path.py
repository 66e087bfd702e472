"""Stochastic depth ("drop path") for transformers' ViT, which has none of its own.

The official vision runs build their DeiTs with `drop_path_rate=0.1`
(`Vision/domainbed/algorithms.py:294, 308`): block i's two residual branches (attention and
MLP) are each dropped for a whole sample with probability `0.1 · i / (depth − 1)`
(`vision_transformer.py:360`), the kept ones scaled up to keep the expectation. A ViT block
in transformers applies its `dropout` module to exactly those two branches before adding the
residual, so stochastic depth goes there, after that dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from emoe_cli.errors import UserError
from emoe_cli.moe.adapters import adapter_for


class DropPath(nn.Module):
    """The block's own dropout, then in training each sample's branch zeroed with
    probability `rate` and the rest scaled by 1 / (1 − rate)."""

    def __init__(self, dropout: nn.Module, rate: float) -> None:
        super().__init__()
        self.dropout, self.rate = dropout, rate
        self.train(dropout.training)  # added to an evaluating model, it evaluates too

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        branch = self.dropout(branch)
        if not self.training or self.rate == 0.0:
            return branch
        keep = 1.0 - self.rate
        shape = (branch.shape[0],) + (1,) * (branch.ndim - 1)
        return branch * branch.new_empty(shape).bernoulli_(keep) / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


def add_drop_path(model: nn.Module, rate: float) -> list[float]:
    """Give the ViT blocks of `model` stochastic depth rising linearly from 0 to `rate`;
    returns the per-block rates (empty for rate 0, where nothing changes)."""
    if rate == 0.0:
        return []
    if not 0.0 < rate < 1.0:
        raise UserError(f"model.drop_path_rate={rate!r} is invalid; valid: a number in [0, 1)")
    try:
        layers = adapter_for(model).blocks(model)
    except ValueError:
        layers = None
    if layers is None or not all(isinstance(getattr(b, "dropout", None), nn.Dropout)
                                 for b in layers):
        raise UserError("model.drop_path_rate: this model's blocks have no residual-branch "
                        "dropout to extend (valid: transformers >= 5 ViT / DeiT models)")
    depth = len(layers)
    rates = [rate * i / (depth - 1) if depth > 1 else rate for i in range(depth)]
    for block, block_rate in zip(layers, rates):
        block.dropout = DropPath(block.dropout, block_rate)
    return rates
