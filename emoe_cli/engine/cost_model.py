"""Which exact path computes an EMoE layer, decided from the routed counts: the cost model keeps
the sparse path to the shapes where it beats masking (measurements: `docs/performance.md`, "The
cost model").
"""

from __future__ import annotations

import functools

import torch

GATHER_PENALTY = {False: 38.0, True: 42.0}  # neurons, for inference / training (grad enabled)
HOT_COST = 1.1
MASKED_COST = 1.05
MIN_TOKENS_PER_EXPERT = 4  # fewer (pairs / N): the per-expert overhead beats the saving
EXPERT_STEPS_FLOPS = 1e7  # each expert's fixed cost, in floating-point operations of dense work
ROW_MULTIPLE = 64  # per-expert pairs padded to this where oneDNN builds kernels per shape
ONEDNN_OVERHEAD = 2.5  # bf16/fp16 through oneDNN: products ~2.4x fp32's speed, gathering not


def pair_cost(expert_size: int, training: bool, overhead: float = 1.0) -> float:
    """One gathered (token, expert) pair's time relative to one token through a dense block."""
    return 1 + overhead * GATHER_PENALTY[training] / expert_size


def hot_share(expert_size: int, training: bool, overhead: float = 1.0) -> float:
    """Experts chosen by more than this share of the tokens run as one masked block."""
    return HOT_COST / pair_cost(expert_size, training, overhead)


def expert_costs(shares: torch.Tensor, expert_size: int, training: bool,
                 overhead: float = 1.0) -> torch.Tensor:
    """Each expert's time at its cheaper way (gathered or masked), given its share of tokens,
    relative to all tokens through its block of the dense FFN."""
    return (shares.float() * pair_cost(expert_size, training, overhead)).clamp(max=HOT_COST)


def sparse_cost(shares: torch.Tensor, expert_size: int, training: bool,
                overhead: float = 1.0) -> float:
    """The sparse path's time as a fraction of the dense FFN's, given each expert's share."""
    return float(expert_costs(shares, expert_size, training, overhead).mean())


def fixed_cost(experts: int, tokens: int, d: int, d_ff: int, gated: bool,
               overhead: float = 1.0) -> float:
    """The sparse path's per-expert fixed costs for `experts` experts with pairs, as a
    fraction of the dense FFN's time on `tokens` tokens of width `d`."""
    dense_flops = tokens * 2 * d * d_ff * (3 if gated else 2)
    return overhead * experts * EXPERT_STEPS_FLOPS / max(dense_flops, 1)


def sparse_may_pay(chosen: torch.Tensor, num_experts: int) -> bool:
    """Whether `auto` should weigh the sparse path at all for `route()`'s [tokens, k] output:
    only on CPU, and only when each expert gets a few pairs on average."""
    return chosen.device.type == "cpu" and chosen.numel() / num_experts >= MIN_TOKENS_PER_EXPERT


def overhead(dtype: torch.dtype, device: torch.device) -> float:
    """How much dearer, relative to the dense FFN, the sparse path's gathering and fixed
    steps are than in fp32: `ONEDNN_OVERHEAD` where oneDNN runs the products, else 1."""
    return ONEDNN_OVERHEAD if _padded(dtype, device) else 1.0


def row_multiple(dtype: torch.dtype, device: torch.device) -> int:
    """What each gathered expert's pair count is padded to (`dispatch.pad_pairs`): 1 (no
    padding) unless oneDNN runs the products, which builds a kernel per product shape."""
    return ROW_MULTIPLE if _padded(dtype, device) else 1


def _padded(dtype: torch.dtype, device: torch.device) -> bool:
    return device.type == "cpu" and _onednn_runs(dtype)


@functools.cache
def _onednn_runs(dtype: torch.dtype) -> bool:
    """Whether CPU products in `dtype` go to oneDNN (bf16/fp16 where it supports them: the
    check ATen itself makes)."""
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported",
             torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    try:
        return check is not None and bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or another torch
        return False
