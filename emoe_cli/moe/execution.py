"""Which exact path computes an EMoE layer: masked (dense, then zero) or sparse (selected only).

Both give the same function; only their cost differs. The sparse path does about k/N of
the masked path's multiply-adds, but pays a fixed Python cost per expert (a gather, two
small products and a scatter-add, about 3 times as many in the backward pass) and moves
each token k times. So it wins when k/N is small and there are enough tokens per expert to
keep the small products efficient; masking wins for a handful of tokens (one sentence at
inference) or when k/N is near 1. `auto` applies that rule, with thresholds measured on
CPU by `scripts/bench/bench_layer.py`. On GPUs the per-expert loop means dozens of kernel
launches per layer, which the masked path's two large products beat at these sizes, so
`auto` keeps masking there.
"""

from __future__ import annotations

import torch

EXECUTIONS = ("auto", "masked", "sparse")
MAX_SPARSE_FRACTION = 0.5  # k/N above this: sparse saves too little to pay its overhead
MIN_TOKENS_PER_EXPERT = 4  # fewer (tokens · k / N): per-expert overhead beats the saving


def choose_execution(execution: str, x: torch.Tensor, top_k: int, num_experts: int) -> str:
    """`masked` or `sparse` for a layer input `x` of [tokens, d]; `auto` picks by the rule."""
    if execution != "auto":
        return execution
    fraction = top_k / num_experts
    tokens_per_expert = x.shape[0] * fraction
    if (x.device.type == "cpu" and fraction <= MAX_SPARSE_FRACTION
            and tokens_per_expert >= MIN_TOKENS_PER_EXPERT):
        return "sparse"
    return "masked"
