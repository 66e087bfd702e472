"""Which exact path computes an EMoE layer: masked (dense, then zero) or sparse (selected only).

Both give the same function; only their cost differs, and the cost depends on the routing.
The sparse path (`moe/dispatch.py`) handles each expert one of two ways: it gathers the
expert's tokens and runs its thin block on them, or, for an expert that most tokens chose,
it runs the block on every token and zeroes the rest (the masked path for that expert alone).
Costs below are fractions of the dense FFN's time per token and expert block, fitted in fp32
with `scripts/bench/bench_layer.py` (real, skewed routing; MiniLM 384x1536 and
BERT-base-shaped 768x3072 layers, N = 64, k = 16 and 32; the pair costs on a 2-core AVX2
CPU, the fixed steps on a 2-core AVX-512 one with the allocator keeping freed memory,
`emoe_cli/allocator.py`, so that the dense FFN no longer pays for page faults):

* a gathered pair costs `1 + GATHER_PENALTY / expert_size`: the thin products run below the
  machine's peak and every pair is gathered and scattered. Inference and training were
  fitted apart; the inference value was refitted on the AVX-512 machine, in one process
  timing penalties of 0.3-1.4x the old 55 in interleaved rounds on fresh batches: 0.5-0.85x
  gave the BERT-base-shaped layer 1.99-2.08x the dense forward speed at 16/64, 1.0x 1.93x
  (twice), 1.4x 1.89x; training and MiniLM's layer were flat over the range;
* a masked block costs `HOT_COST` per token (the wide product, the zeroing, a weight copy);
* the masked path costs `MASKED_COST` (the dense FFN plus zeroing every block);
* each expert that has pairs adds a fixed cost, `EXPERT_STEPS_FLOPS`: its dozen small
  operations (gather, products, slices, the staged sums) and its share of the call's own
  (plan, buffers) cost about as much as that many floating-point operations of the dense
  FFN, whatever the number of tokens. Against the dense FFN's `2 · d · d_ff` multiply-adds
  per token (3 with a gate) this is little at 4,096 tokens of a wide FFN and decisive at a
  few hundred, or in a narrow one. Fitted (with the penalties above, which still fit) to
  the sparse/masked time ratios of all 12 cells of {MiniLM, BERT-base-shaped} x {16, 32}/64
  x {256, 1,024, 4,096 tokens}, forward and training, once the experts ran one run per core
  (`moe/expert_threads.py`): 1e7 puts every cell on its faster path (ties within 4 % aside)
  and predicts the ratios within 17 % where sparse could win; the 4.5e7 of the
  one-expert-at-a-time loop now masked four cells that sparse won by 6-33 %, among them
  1,024 tokens of MiniLM's layer at 16/64 (13.6 ms sparse, 14.6 masked) and 256 tokens of
  the BERT-base-shaped layer at 16/64 (10.9 against 15.1).

So an expert is gathered when its share of the tokens is below `HOT_COST / pair cost`
(about half the tokens for 48-wide experts), and `auto` takes the sparse path when the sum
over experts of the cheaper choice, plus the experts' fixed costs, beats masking. Shares
are counted within groups of tokens that route alike (`moe/token_groups.py`), each with its
own masked block. With every expert hot the sparse path is the masked path plus copies, so
`auto` masks there.

Where oneDNN runs the products in bf16 or fp16 (CPUs with AVX-512 or ARM's bf16, under
`trainer.precision=bf16`), two things change. oneDNN builds a kernel for every new product
shape, about 1.5 ms each, and routing changes each expert's row count with every batch:
as they come, nearly every per-expert product paid for a new kernel (BERT-base-shaped
layer, 16/64, a fresh batch each call: 0.81x the dense bf16 FFN's speed forward, 0.67x
forward+backward). So each expert's pairs are padded to a multiple of `ROW_MULTIPLE` with
pairs of weight 0 (`dispatch.pad_pairs`) and the tokens stay one group: the shapes come
from a small set that oneDNN's cache keeps (1.21x and 1.35x; multiples of 32 and 128 gave
1.18x and 1.15x forward). And there the products run about 2.4 times fp32's speed while
gathering, scattering and the per-expert steps do not, so their modelled costs are
`ONEDNN_OVERHEAD` times fp32's: BERT-base's FFN runs sparse at 16 and 32 of 64, MiniLM's at
16/64 (sparse 0.88-0.94x the dense bf16 FFN's speed forward, masked 0.81-0.84x) and masked
at 32/64 (sparse 0.73-0.76x, masked 0.81-0.82x). CPUs with AMX run bf16 products faster still,
where the factor is likely higher (not measured). A CPU without oneDNN's bf16 computes
bf16 products in plain loops, several times slower than fp32, where gathering is cheap
beside them and the fp32 costs hold. On GPUs the per-expert loop means dozens of kernel
launches per layer, which the masked path's two large products beat at these sizes, so
`auto` masks there too (not measured: no GPU was lent to this project's sessions).
"""

from __future__ import annotations

import functools

import torch

EXECUTIONS = ("auto", "masked", "sparse")
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
