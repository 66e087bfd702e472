"""Which exact path computes an EMoE layer: masked (dense, then zero) or sparse (selected only).

Both give the same function; only their cost differs, and the cost depends on the routing.
The sparse path (`moe/dispatch.py`) handles each expert one of two ways: it gathers the
expert's tokens and runs its thin block on them, or, for an expert that most tokens chose,
it runs the block on every token and zeroes the rest (the masked path for that expert alone).
Costs are fractions of the dense FFN's time per token and expert block (`Costs`), fitted
with `scripts/bench/bench_layer.py` on real, skewed routing (MiniLM 384x1536 and
BERT-base-shaped 768x3072 layers, N = 64, k = 16 and 32):

* a gathered pair costs `1 + gather_penalty / expert_size`: the thin products run below the
  machine's peak and every pair is gathered and scattered; the backward pass does more
  product work per gathered row, so training pays less per pair than inference;
* a masked block costs `hot` per token (the wide product, the zeroing, a weight copy);
* the masked path costs `masked` (the dense FFN plus the router and zeroing every block);
* each expert that has pairs adds a fixed cost, `expert_steps_flops`: its dozen small
  operations (gather, products, slices, the staged sums) and its share of the call's own
  (plan, casts, buffers) cost about as much as that many floating-point operations of the
  dense FFN, whatever the number of tokens. Against the dense FFN's `2 · d · d_ff`
  multiply-adds per token (3 with a gate) this is little at 4,096 tokens of a wide FFN and
  decisive at a few hundred, or in a narrow one: in fp32, 1,024 tokens of MiniLM's layer at
  16/64 took 30 ms sparse against 18 masked, 4,096 tokens at 32/64 73 against 67.

The constants depend on how fast the products run against everything else, so there are
two sets (`costs_for`). `FP32`'s pair costs were fitted on a 2-core AVX2 CPU; its fixed
steps on a 2-core AVX-512 one with the allocator keeping freed memory
(`emoe_cli/allocator.py`), where the dense FFN no longer pays for page faults. `NATIVE_HALF`
holds where a CPU multiplies bf16 (or fp16) in hardware (AVX512-BF16, AMX): the products
run about 2.5 times faster than in fp32 while gathering, scattering and the Python loop
over experts do not, so a gathered pair and each expert's fixed steps weigh more (fitted in
bf16 on that AVX512-BF16 CPU: MiniLM's layer masks, the BERT-base-shaped one runs sparse at
16/64 and masks at 32/64). A CPU without such instructions emulates bf16 products several
times slower than fp32, which makes everything but the products cheap beside them: the
fp32 constants are the cautious choice there.

So an expert is gathered when its share of the tokens is below `hot / pair cost` (about
half the tokens for 48-wide experts in fp32), and `auto` takes the sparse path when the sum
over experts of the cheaper choice, plus the experts' fixed costs, beats masking. Shares
are counted within groups of tokens that route alike (`moe/token_groups.py`), each with its
own masked block. With every expert hot the sparse path is the masked path plus copies, so
`auto` masks there. On GPUs the per-expert loop means dozens of kernel launches per layer,
which the masked path's two large products beat at these sizes, so `auto` keeps masking
there (not measured: no GPU was lent to this project's sessions).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

EXECUTIONS = ("auto", "masked", "sparse")
MIN_TOKENS_PER_EXPERT = 4  # fewer (pairs / N): the per-expert overhead beats the saving


@dataclass(frozen=True)
class Costs:
    """The cost model's constants for one kind of product (see the module doc)."""

    gather_penalty: tuple[float, float]  # neurons, in inference / in training (grad enabled)
    hot: float
    masked: float
    expert_steps_flops: float

    def pair(self, expert_size: int, training: bool) -> float:
        """One gathered (token, expert) pair's time relative to one token through a dense
        block."""
        return 1 + self.gather_penalty[training] / expert_size

    def hot_share(self, expert_size: int, training: bool) -> float:
        """Experts chosen by more than this share of the tokens run as one masked block."""
        return self.hot / self.pair(expert_size, training)

    def experts(self, shares: torch.Tensor, expert_size: int, training: bool) -> torch.Tensor:
        """Each expert's time at its cheaper way (gathered or masked), given its share of
        tokens, relative to all tokens through its block of the dense FFN."""
        return (shares.float() * self.pair(expert_size, training)).clamp(max=self.hot)

    def sparse(self, shares: torch.Tensor, expert_size: int, training: bool) -> float:
        """The sparse path's time as a fraction of the dense FFN's, given each expert's
        share."""
        return float(self.experts(shares, expert_size, training).mean())

    def fixed(self, experts: int, tokens: int, d: int, d_ff: int, gated: bool) -> float:
        """The sparse path's per-expert fixed costs for `experts` experts with pairs, as a
        fraction of the dense FFN's time on `tokens` tokens of width `d`."""
        dense_flops = tokens * 2 * d * d_ff * (3 if gated else 2)
        return experts * self.expert_steps_flops / max(dense_flops, 1)


FP32 = Costs(gather_penalty=(55.0, 42.0), hot=1.1, masked=1.05, expert_steps_flops=3.5e7)
NATIVE_HALF = Costs(gather_penalty=(100.0, 80.0), hot=1.1, masked=1.12,
                    expert_steps_flops=2e8)


def costs_for(dtype: torch.dtype, device: torch.device) -> Costs:
    """The constants for products in `dtype` on `device`: `NATIVE_HALF` for bf16/fp16 on
    a CPU that multiplies them in hardware, `FP32` otherwise."""
    if device.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
        return NATIVE_HALF if _cpu_multiplies_natively(dtype) else FP32
    return FP32


@functools.cache
def _cpu_multiplies_natively(dtype: torch.dtype) -> bool:
    """Whether oneDNN runs `dtype` products in hardware here (what ATen itself checks
    before it sends a bf16/fp16 product there)."""
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported",
             torch.float16: "_is_mkldnn_fp16_supported"}[dtype]
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or an older torch
        return False


def sparse_may_pay(chosen: torch.Tensor, num_experts: int) -> bool:
    """Whether `auto` should weigh the sparse path at all for `route()`'s [tokens, k] output:
    only on CPU, and only when each expert gets a few pairs on average."""
    return (chosen.device.type == "cpu"
            and chosen.numel() / num_experts >= MIN_TOKENS_PER_EXPERT)
