"""Sparse, dropless execution of an EMoE layer: compute only the chosen (token, expert) pairs,
since masking pays for every expert (design and measurements: `docs/performance.md`, "The sparse
path").
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from emoe_cli.engine.expert_threads import run_each, runs, thread_count
from emoe_cli.engine.token_groups import TokenSplit, one_group


@dataclass
class HotBlock:
    """Experts computed as one masked block for a group of tokens (`engine/token_groups.py`)."""

    tokens: torch.Tensor | None  # the group's token indices; None: every token
    experts: list[int]


@dataclass
class Dispatch:
    """The gathered (token, expert) pairs sorted by expert, and the masked blocks.

    Each gathered expert's pairs are consecutive, in expert order (`gathered_experts` gives
    the experts and their pair counts). When any expert is hot, `blocks`
    has one entry per token group (a group without hot experts has an empty list) and
    `gates` holds every token's route weights, from which the blocks take their masks.
    """

    token: torch.Tensor  # [pairs] token index of each gathered pair
    weight: torch.Tensor  # [pairs] route weight of each pair (keeps the router's autograd graph)
    counts: list[int]  # gathered pairs per expert, in expert order
    unit: bool = False  # every weight is a constant 1 (avg-k gating): skip the products
    blocks: list[HotBlock] = field(default_factory=list)
    gates: torch.Tensor | None = None  # [tokens, experts] route weights, 0 where not chosen
    restore: torch.Tensor | None = None  # token order from the groups' concatenated order

    @property
    def gathered(self) -> int:
        """How many pairs are gathered."""
        return self.token.shape[0]

    @property
    def hot(self) -> list[int]:
        """Experts that run masked for at least one group of tokens."""
        return sorted({e for block in self.blocks for e in block.experts})

    @cached_property
    def gathered_experts(self) -> tuple[list[int], list[int]]:
        """The experts that have gathered pairs, in order, and their pair counts."""
        experts = [e for e, count in enumerate(self.counts) if count]
        return experts, [self.counts[e] for e in experts]


def group_by_expert(chosen: torch.Tensor, weights: torch.Tensor, num_experts: int,
                    hot_share: float = 1.0, split: TokenSplit | None = None,
                    row_multiple: int = 1) -> Dispatch:
    """Sort the pairs of `route()`'s output ([tokens, k] indices and weights) by expert.

    Within each group of `split` (default: one group of every token), experts chosen by
    more than `hot_share` of the group's tokens are hot (see the module doc): their pairs
    there run in the group's masked block, not gathered. With `row_multiple > 1` each
    gathered expert's pairs are padded up to a multiple of it with pairs of weight 0 (token
    0), so that its products take one of a few shapes (see `pad_pairs`).
    """
    tokens, k = chosen.shape
    if split is None:
        split = one_group(chosen, weights, num_experts)
    is_hot = split.counts > hot_share * split.sizes.unsqueeze(-1)  # [groups, experts]
    expert = chosen.reshape(-1)
    weight = weights.reshape(-1)
    any_hot = bool(is_hot.any())
    gather = weight != 0  # dropped pairs (e.g. over an expert's capacity) cost nothing
    if any_hot:
        group = split.label().repeat_interleave(k) if len(split.groups) > 1 else 0
        gather &= ~is_hot[group, expert]
    if bool(gather.all()):  # pair p is (token p // k, its choice p % k)
        pair = torch.argsort(expert.int(), stable=True)  # 32-bit keys sort twice as fast
    else:
        pair = gather.nonzero().flatten()
        pair = pair[torch.argsort(expert[pair].int(), stable=True)]
    counts = torch.bincount(expert[pair], minlength=num_experts)
    token, weight = pair // k, weight[pair]
    unit = not weight.requires_grad and bool((weight == 1).all())
    if row_multiple > 1:
        token, weight, counts = pad_pairs(token, weight, counts, row_multiple)
        unit = False  # the padding pairs' weight 0 must be applied
    dispatch = Dispatch(token, weight, counts.tolist(), unit)
    if any_hot:
        several = len(split.groups) > 1
        dispatch.blocks = [HotBlock(group if several else None, row.nonzero().flatten().tolist())
                           for group, row in zip(split.groups, is_hot)]
        dispatch.gates = weights.new_zeros(tokens, num_experts).scatter(1, chosen, weights)
        if several:
            dispatch.restore = torch.cat(split.groups).argsort()
    return dispatch


def pad_pairs(token: torch.Tensor, weight: torch.Tensor, counts: torch.Tensor,
              multiple: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expert-sorted pairs with each expert's count rounded up to a multiple of `multiple`
    by pairs of token 0 and weight 0 (they add exact zeros, forward and backward).

    Why: where oneDNN computes bf16/fp16 products on CPU it builds a kernel for every new
    product shape (about 1.5 ms each). The per-expert row counts change with every batch,
    so without padding nearly every product pays for a new kernel; with it the shapes come
    from a small set that oneDNN's primitive cache keeps.
    """
    padded = (counts + multiple - 1) // multiple * multiple
    # How far each expert's pairs move: the padding added before them.
    shift = torch.cumsum(padded - counts, 0) - (padded - counts)
    position = torch.arange(token.shape[0], device=token.device) + \
        torch.repeat_interleave(shift, counts)
    total = int(padded.sum())
    token = token.new_zeros(total).index_copy_(0, position, token)
    weight = weight.new_zeros(total).index_copy(0, position, weight)  # keeps autograd
    return token, weight, padded


def sparse_ffn(x: torch.Tensor, dispatch: Dispatch, act: nn.Module, w1: torch.Tensor,
               b1: torch.Tensor | None, w2: torch.Tensor, w_up: torch.Tensor | None = None,
               b_up: torch.Tensor | None = None, b2: torch.Tensor | None = None,
               dropout: float = 0.0, dropout_before: bool = True) -> torch.Tensor:
    """`b2 + Σ_pairs weight · W2_e (act(W1_e x + b1_e) [⊙ (W_up,e x + b_up,e)])` per token.

    `dropout` > 0 is the official code's expert dropout, on the pre-activations
    (`dropout_before`) or on the activations; each pair draws its own mask once, which the
    backward pass reuses.

    `x` is [tokens, d]; weights are in the permuted layout (expert e owns neurons
    `e·s .. (e+1)·s`). All tensors must share one dtype; the gathered experts' sum is
    accumulated in fp32, the masked blocks are products in that dtype, as in the masked
    path. The masked blocks' output (with `b2`) is the tensor the gathered experts are
    added to, so no separate zeroed output or bias pass is needed.
    """
    base = None
    drop = (dropout, dropout_before)
    if dispatch.blocks:
        base = _masked_blocks(x, dispatch, act, w1, b1, w2, w_up, b_up, b2, drop)
        if not dispatch.gathered:
            return base
    keep = None
    if dropout > 0:
        keep = x.new_empty(dispatch.gathered, w1.shape[0] // len(dispatch.counts))
        keep.bernoulli_(1 - dropout).div_(1 - dropout)
    y = _SparseExperts.apply(x, dispatch.token, dispatch.weight, dispatch, act, w1, b1, w2,
                             w_up, b_up, base, keep, dropout_before)
    return y if base is not None or b2 is None else y.add_(b2)  # y is a new tensor


def _masked_blocks(x, dispatch, act, w1, b1, w2, w_up, b_up, b2, drop=(0.0, True)):
    """Every token's output from its group's hot experts (the masked path restricted to
    them), plus `b2`; in token order."""
    if dispatch.restore is None:
        block = dispatch.blocks[0]
        return _masked_block(x, dispatch.gates, block.experts, act, w1, b1, w2, w_up, b_up, b2,
                             drop=drop)
    # One copy into group order, each group a slice, one copy back. Without autograd each
    # group's product is written straight into its slice of the output (no `cat`).
    order = torch.cat([block.tokens for block in dispatch.blocks])
    x, gates = x.index_select(0, order), dispatch.gates.index_select(0, order)
    tracked = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, gates, w1, b1, w2, w_up, b_up, b2))
    out = None if tracked else x.new_empty(x.shape[0], w2.shape[0])
    outputs, start = [], 0
    for block in dispatch.blocks:
        end = start + block.tokens.shape[0]
        outputs.append(_masked_block(x[start:end], gates[start:end], block.experts, act, w1,
                                     b1, w2, w_up, b_up, b2, drop=drop,
                                     out=None if out is None else out[start:end]))
        start = end
    return (torch.cat(outputs) if out is None else out).index_select(0, dispatch.restore)


def _masked_block(x, gates, experts, act, w1, b1, w2, w_up, b_up, b2, drop=(0.0, True),
                  out=None):
    """One group's `experts` over the group's tokens (`x`, `gates`), pairs not chosen zeroed;
    into `out` when given. `drop`: (expert dropout, whether before the activation)."""
    if not experts:
        result = (x.new_zeros(x.shape[0], w2.shape[0]) if b2 is None
                  else b2.expand(x.shape[0], -1))
        return result if out is None else out.copy_(result)
    size = w1.shape[0] // gates.shape[1]
    hot = torch.tensor(experts, device=x.device)
    pre = F.linear(x, _expert_blocks(w1, hot, size), _expert_blocks(b1, hot, size))
    h = expert_activation(pre, act, *drop)
    if w_up is not None:
        h = h * F.linear(x, _expert_blocks(w_up, hot, size), _expert_blocks(b_up, hot, size))
    h = scale_blocks(h, gates.index_select(1, hot).to(h.dtype), size)
    w2_hot = _expert_blocks(w2, hot, size, dim=1)
    if out is None:
        return F.linear(h, w2_hot, b2)
    return _linear_into(out, h, w2_hot, b2)


def expert_activation(pre: torch.Tensor, act: nn.Module, dropout: float = 0.0,
                      before: bool = True) -> torch.Tensor:
    """`act(pre)` with the official expert dropout on its input (`before`) or its output."""
    if dropout and before:
        pre = F.dropout(pre, dropout)
    h = act(pre)
    return F.dropout(h, dropout) if dropout and not before else h


def _expert_blocks(tensor: torch.Tensor | None, hot: torch.Tensor, size: int,
                   dim: int = 0) -> torch.Tensor | None:
    """The `hot` experts' blocks of a weight or bias, side by side along `dim`. Selected as
    whole blocks (a [.., experts, size, ..] view): at BERT-base shapes a third of the time of
    selecting W2's columns one by one, forward and backward."""
    if tensor is None:
        return None
    shape = list(tensor.shape)
    blocks = tensor.view(*shape[:dim], -1, size, *shape[dim + 1:])
    shape[dim] = -1
    return blocks.index_select(dim, hot).reshape(shape)


def scale_blocks(h: torch.Tensor, scale: torch.Tensor, size: int) -> torch.Tensor:
    """Each token's `size`-wide blocks of `h` ([tokens, blocks·size]) times its `scale`
    ([tokens, blocks]); in place when autograd tracks neither (inference), which saves a
    copy of the hidden layer and its page faults."""
    blocks = h.view(h.shape[0], -1, size)
    scale = scale.unsqueeze(-1)
    if h.device.type == "cpu" and h.dtype in (torch.bfloat16, torch.float16):
        # A bf16/fp16 multiply that broadcasts along the last dimension runs a scalar loop
        # on CPU; spelled out to full width it vectorises (MiniLM's 4096 x 1536 hidden
        # layer in bf16: 5.0 ms -> 1.2 ms with the copy). fp32 broadcasts fast as it is.
        scale = scale.expand_as(blocks).contiguous()
    if torch.is_grad_enabled() and (h.requires_grad or scale.requires_grad):
        return (blocks * scale).view_as(h)
    return blocks.mul_(scale).view_as(h)


def _split(tensor: torch.Tensor | None, sections: int | list[int], count: int | None = None,
           dim: int = 0) -> list:
    """`tensor.split(sections, dim)` as a list of views: each expert's block of a weight
    (`sections` = expert size, `count` = number of experts) or each gathered expert's rows
    of a per-pair tensor (`sections` = pair counts); Nones when there is no tensor."""
    if tensor is None:
        return [None] * (len(sections) if count is None else count)
    return list(tensor.split(sections, dim))


def _linear_into(out: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                 b: torch.Tensor | None) -> torch.Tensor:
    """`F.linear(x, w, b)` written into `out` (a slice of a preallocated buffer)."""
    return torch.mm(x, w.t(), out=out) if b is None else torch.addmm(b, x, w.t(), out=out)


class _Scratch(threading.local):
    """Temporary buffers kept from one layer call to the next, per thread.

    The gathered rows and the staged sums are tens of megabytes that live only inside one
    call. Freed, glibc hands such blocks back to the system, and taking them again costs a
    page fault per 4 KiB on every call (measured at BERT-base shapes: 12,000 faults, about
    5 % of a forward); kept, they cost nothing after the first call. They hold the largest
    size seen, for each name, dtype and device.
    """

    def __init__(self) -> None:
        self.blocks: dict[tuple, torch.Tensor] = {}

    def take(self, name: str, rows: int, like: torch.Tensor, dtype: torch.dtype | None = None):
        """A [rows, like.shape[1]] buffer of `dtype` (default: like's), contents undefined."""
        dtype = dtype or like.dtype
        key = (name, dtype, like.device)
        needed = rows * like.shape[1]
        block = self.blocks.get(key)
        if block is None or block.numel() < needed:
            # A normal tensor even under inference mode: such a tensor could be written only
            # in inference mode, and the next call may be a training one.
            with torch.inference_mode(False):
                block = self.blocks[key] = torch.empty(needed, dtype=dtype, device=like.device)
        return block[:needed].view(rows, like.shape[1])


_SCRATCH = _Scratch()


class _Gather:
    """Rows of `source` gathered into one reused buffer (`_Scratch`), one expert at a time."""

    def __init__(self, source: torch.Tensor, rows: int) -> None:
        self.source = source
        self.buffer = _SCRATCH.take("gather", rows, source)

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        return torch.index_select(self.source, 0, index, out=self.buffer[:index.shape[0]])


STAGED_ROWS_PER_TOKEN = 2  # the staging buffers of `_StagedIndexAdd`, in rows per token


class _StagedIndexAdd:
    """Adds per-pair rows into `total` at their tokens, many experts per `index_add_`.

    On CPU, `index_add_` sorts its index and then reduces, in parallel only for large
    inputs: one call per expert pays that setup about 60 times per layer and runs on one
    thread (measured at BERT-base shapes, 16/64: 15 ms per layer call, against 8 ms for the
    same rows added in batches of about 8 experts). So each expert's product is written
    straight into a staging buffer, as the `out=` of its matrix product, and the buffer is
    added whenever the next expert would not fit. Slots follow the pairs in order. With
    several threads (`engine/expert_threads.py`) each has its own buffer, `1 / threads` of
    the size.
    """

    def __init__(self, total: torch.Tensor, token: torch.Tensor, dtype: torch.dtype,
                 busiest: int, threads: int = 1) -> None:
        self.total, self.token = total, token
        rows = min(token.shape[0],
                   max(busiest, int(STAGED_ROWS_PER_TOKEN * total.shape[0] / threads)))
        self.stage = _SCRATCH.take("stage", rows, total, dtype)
        self.done = self.used = 0  # pairs already added, pairs staged

    def slot(self, pairs: int) -> torch.Tensor:
        """The staging rows for the next `pairs` pairs (at most `busiest`)."""
        if self.used + pairs > self.stage.shape[0]:
            self.flush()
        self.used += pairs
        return self.stage[self.used - pairs:self.used]

    def flush(self) -> None:
        if self.used:
            rows = self.stage[:self.used]
            if rows.dtype != self.total.dtype:  # bf16/fp16 products, summed in fp32
                # Converted into a kept buffer: a fresh one page-faults every time (3 ms
                # for 8,000 of MiniLM's rows, against 0.3 ms for the conversion itself).
                rows = _SCRATCH.take("stage_total", self.used, self.total).copy_(rows)
            self.total.index_add_(0, self.token[self.done:self.done + self.used], rows)
        self.done, self.used = self.done + self.used, 0


@dataclass
class _Runs:
    """The gathered experts cut into one contiguous run per thread (`engine/expert_threads.py`),
    and where each expert's pairs start."""

    experts: list[int]  # the gathered experts, in order
    sizes: list[int]  # their pair counts
    tokens: list[torch.Tensor]  # their pairs' tokens
    parts: list[range]  # runs of positions in `experts`, one per thread
    starts: list[int]  # first pair of each position; starts[-1] = all pairs

    @classmethod
    def of(cls, dispatch: Dispatch, device: torch.device) -> _Runs:
        experts, sizes = dispatch.gathered_experts
        return cls(experts, sizes, list(dispatch.token.split(sizes)),
                   runs(sizes, thread_count(device)), [0, *itertools.accumulate(sizes)])

    @property
    def busiest(self) -> int:
        return max(self.sizes, default=0)

    def pairs(self, part: range) -> slice:
        """The pairs of a run."""
        return slice(self.starts[part.start], self.starts[part.stop])

    def sums(self, total: torch.Tensor, compute: Callable[[int, range, torch.Tensor], None]):
        """Runs `compute(index, part, sums)` on every run, each on its thread, where `sums`
        is `total` for the first run and a zeroed fp32 buffer like it for the others; then
        adds those into `total`, in run order (so threads finishing in another order give
        the same bits)."""
        # The calling thread's buffers, one per run: a pool thread may run two runs.
        sums = [total] + [_SCRATCH.take(f"run_sums_{index}", total.shape[0], total,
                                        torch.float32) for index in range(1, len(self.parts))]

        def task(index: int, part: range) -> None:
            compute(index, part, sums[index] if index == 0 else sums[index].zero_())

        run_each(task, self.parts)
        for other in sums[1:]:
            total.add_(other)


class _SparseExperts(torch.autograd.Function):
    """Forward and backward of `sparse_ffn`, looping over the experts that have pairs, one
    contiguous run of them per thread (`engine/expert_threads.py`)."""

    @staticmethod
    def forward(ctx, x, token, weight, dispatch, act, w1, b1, w2, w_up, b_up, base, keep=None,
                before=True):
        """Adds the gathered experts to `base` (in place) or to zeros. `keep` ([pairs, size]
        or None) is the expert-dropout scale, on the pre-activations when `before`."""
        num = len(dispatch.counts)
        size = w1.shape[0] // num
        pairs = token.shape[0]
        pre = x.new_empty(pairs, size)
        up = None if w_up is None else x.new_empty(pairs, size)
        if base is None:
            out = torch.zeros(x.shape[0], w2.shape[0], dtype=torch.float32, device=x.device)
        elif base.dtype == torch.float32:
            out = base
        else:  # a bf16/fp16 base: summed in fp32 in a kept buffer, written back once
            out = _SCRATCH.take("sums", x.shape[0], base, torch.float32).copy_(base)
        w1_of, b1_of = _split(w1, size, num), _split(b1, size, num)
        up_of, b_up_of = _split(w_up, size, num), _split(b_up, size, num)
        w2_of = _split(w2, size, num, dim=1)
        run = _Runs.of(dispatch, x.device)
        pre_of, up_of_pairs = _split(pre, run.sizes), _split(up, run.sizes)

        def compute(index: int, part: range, sums: torch.Tensor) -> None:
            # Two passes, each a tight loop over the run's experts: every first-layer product
            # (its gathered rows still in cache), one activation over the run's pairs, then
            # every second-layer product. Interleaving them per expert measured 15 % slower:
            # the second products' wide outputs evict the gathered rows and the input.
            gather = _Gather(x, run.busiest)
            for i in part:
                e = run.experts[i]
                xe = gather(run.tokens[i])
                _linear_into(pre_of[i], xe, w1_of[e], b1_of[e])
                if up is not None:
                    _linear_into(up_of_pairs[i], xe, up_of[e], b_up_of[e])
            rows = run.pairs(part)
            h = act(pre[rows] if keep is None or not before else pre[rows] * keep[rows])
            if h._base is pre:  # an identity activation returns its input: `pre` is saved
                h = h.clone()
            if keep is not None and not before:
                h = h.mul_(keep[rows])
            if up is not None:
                h = h.mul_(up[rows])
            if not dispatch.unit:
                h = h.mul_(weight[rows, None])
            staged = _StagedIndexAdd(sums, token[rows], x.dtype, run.busiest, len(run.parts))
            for i, he in zip(part, h.split(run.sizes[part.start:part.stop])):
                torch.mm(he, w2_of[run.experts[i]].t(), out=staged.slot(he.shape[0]))
            staged.flush()

        with torch.autocast(x.device.type, enabled=False):
            run.sums(out, compute)
        ctx.act, ctx.dispatch, ctx.before = act, dispatch, before
        ctx.save_for_backward(x, token, weight, w1, b1, w2, w_up, b_up, pre, up, keep)
        if base is None:
            return out.to(x.dtype)
        if out is not base:
            base.copy_(out)
        ctx.mark_dirty(base)
        return base

    @staticmethod
    def backward(ctx, grad_out):
        x, token, weight, w1, b1, w2, w_up, b_up, pre, up, keep = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dispatch = ctx.dispatch
        num = len(dispatch.counts)
        size = w1.shape[0] // num
        run = _Runs.of(dispatch, x.device)
        grad_in = grad_out
        grad_out = grad_out.to(x.dtype).contiguous()
        with torch.autocast(x.device.type, enabled=False):
            # The activation's own backward, over all pairs at once.
            with torch.enable_grad():
                inputs = [pre.detach().requires_grad_()]
                before = keep is not None and ctx.before
                h = ctx.act(inputs[0] * keep if before else inputs[0])
                if keep is not None and not ctx.before:
                    h = h * keep
                if up is not None:
                    inputs.append(up.detach().requires_grad_())
                    h = h * inputs[1]
            weighted_h = h.detach() if dispatch.unit else h.detach() * weight[:, None]
            grad_h = torch.empty_like(pre)
            grad_w2 = torch.zeros_like(w2) if needs[7] else None
            w2_of, grad_w2_of = _split(w2, size, num, 1), _split(grad_w2, size, num, 1)
            grad_h_of, weighted_h_of = _split(grad_h, run.sizes), _split(weighted_h, run.sizes)

            def output_grads(index: int, part: range) -> None:
                gather = _Gather(grad_out, run.busiest)
                for i in part:
                    e = run.experts[i]
                    ge = gather(run.tokens[i])
                    torch.mm(ge, w2_of[e], out=grad_h_of[i])
                    if grad_w2 is not None:
                        torch.mm(ge.t(), weighted_h_of[i], out=grad_w2_of[e])

            run_each(output_grads, run.parts)
            grad_weight = (grad_h * h.detach()).sum(-1) if needs[2] else None
            grads = torch.autograd.grad(h, inputs,
                                        grad_h if dispatch.unit else grad_h * weight[:, None])
            grad_x, grad_w1, grad_b1, grad_up, grad_b_up = _input_grads(
                x, token, dispatch, run, size, w1, w_up, grads, needs)
        return (grad_x, None, grad_weight, None, None, grad_w1,
                grad_b1 if needs[6] else None, grad_w2, grad_up,
                grad_b_up if needs[9] else None, grad_in if needs[10] else None, None, None)


def _input_grads(x, token, dispatch, run, size, w1, w_up, grads, needs):
    """Gradients of x and of the first-layer weights and biases, expert by expert."""
    num = len(dispatch.counts)
    grad_pre = grads[0]
    grad_upv = grads[1] if len(grads) > 1 else None
    grad_w1 = torch.zeros_like(w1) if needs[5] else None
    grad_up = torch.zeros_like(w_up) if w_up is not None and needs[8] else None
    w1_of, up_of = _split(w1, size, num), _split(w_up, size, num)
    grad_w1_of, grad_up_of = _split(grad_w1, size, num), _split(grad_up, size, num)
    grad_pre_of, grad_upv_of = _split(grad_pre, run.sizes), _split(grad_upv, run.sizes)

    def compute(index: int, part: range, sums: torch.Tensor | None) -> None:
        gather = _Gather(x, run.busiest)
        staged = None if sums is None else _StagedIndexAdd(
            sums, token[run.pairs(part)], x.dtype, run.busiest, len(run.parts))
        for i in part:
            e, gp, gu = run.experts[i], grad_pre_of[i], grad_upv_of[i]
            if grad_w1 is not None or grad_up is not None:
                xe = gather(run.tokens[i])
                if grad_w1 is not None:
                    torch.mm(gp.t(), xe, out=grad_w1_of[e])
                if grad_up is not None:
                    torch.mm(gu.t(), xe, out=grad_up_of[e])
            if staged is not None:
                gx = torch.mm(gp, w1_of[e], out=staged.slot(gp.shape[0]))
                if gu is not None:
                    gx.addmm_(gu, up_of[e])
        if staged is not None:
            staged.flush()

    grad_x = None
    if needs[0]:
        grad_x = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        run.sums(grad_x, compute)
    else:
        run_each(lambda index, part: compute(index, part, None), run.parts)
    grad_b1 = _per_neuron_sums(grad_pre, dispatch, size, w1.shape[0])
    grad_b_up = None if grad_upv is None else _per_neuron_sums(grad_upv, dispatch, size,
                                                               w1.shape[0])
    return (None if grad_x is None else grad_x.to(x.dtype), grad_w1, grad_b1, grad_up,
            grad_b_up)


def _per_neuron_sums(grad: torch.Tensor, dispatch: Dispatch, size: int, d_ff: int):
    """Bias gradients: each expert's pair gradients summed into its block of neurons."""
    sums = grad.new_zeros(d_ff)
    experts, counts = dispatch.gathered_experts
    for expert, rows in zip(experts, grad.split(counts)):
        sums[expert * size:(expert + 1) * size] = rows.sum(0)
    return sums
