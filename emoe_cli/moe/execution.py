"""Which exact path computes an EMoE layer: masked (dense, then zero) or sparse (selected only).

Both give the same function; only their cost differs. The sparse path does k/N of the
masked path's multiply-adds, but in thin products (an expert is `d_ff / N` neurons wide:
24 for MiniLM at N = 64, 48 for BERT-base) that run far below the machine's peak, plus a
gather and a scatter-add of every token k times, and a fixed cost per expert. Measured on
CPU with `scripts/bench/bench_layer.py`, its time relative to the dense FFN is about
`k/N · (1 + 48 / expert_size)` (x3 for 24-wide experts, x2 for 48-wide), while masking
costs about the dense time. So `auto` picks sparse when that estimate is at most 1 and
each expert gets a few tokens on average; otherwise (one sentence at inference, k/N near
1, narrow experts) it masks. On GPUs the per-expert loop means dozens of kernel launches
per layer, which the masked path's two large products beat at these sizes, so `auto`
keeps masking there (not measured here: no GPU on the benchmark machine).
"""

from __future__ import annotations

import torch

EXECUTIONS = ("auto", "masked", "sparse")
THIN_EXPERT_PENALTY = 48  # neurons: sparse costs k/N · (1 + this / expert_size) of dense
MIN_TOKENS_PER_EXPERT = 4  # fewer (tokens · k / N): per-expert overhead beats the saving


def sparse_cost(top_k: int, num_experts: int, expert_size: int) -> float:
    """The sparse path's time as a fraction of the dense FFN's, as measured on CPU."""
    return top_k / num_experts * (1 + THIN_EXPERT_PENALTY / expert_size)


def choose_execution(execution: str, x: torch.Tensor, top_k: int, num_experts: int,
                     expert_size: int) -> str:
    """`masked` or `sparse` for a layer input `x` of [tokens, d]; `auto` picks by the rule."""
    if execution != "auto":
        return execution
    enough_tokens = x.shape[0] * top_k / num_experts >= MIN_TOKENS_PER_EXPERT
    if x.device.type == "cpu" and enough_tokens and sparse_cost(
            top_k, num_experts, expert_size) <= 1:
        return "sparse"
    return "masked"
