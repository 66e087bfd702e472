"""The weight a linear layer actually computes with, also when a LoRA adapter wraps it."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def effective_weight(linear: nn.Module) -> torch.Tensor:
    """`W` for a plain layer; `W + Σ scale · B A` over the active, unmerged adapters of a
    `peft` LoRA layer.

    The avg-k router scores experts with the mean of their key rows; when LoRA tunes the
    keys, the frozen base rows alone would leave routing stuck at its initial state, so the
    router must see the merged keys. Duck-typed on peft's tuner-layer API, so `emoe_cli.moe`
    works without peft installed.
    """
    weight = linear.weight
    if not hasattr(linear, "get_delta_weight") or linear.disable_adapters:
        return weight
    merged = set(linear.merged_adapters)
    for adapter in linear.active_adapters:
        if adapter in linear.lora_A and adapter not in merged:
            weight = weight + linear.get_delta_weight(adapter).to(weight.dtype)
    return weight
