"""One FFN layer: the dense FFN vs EMoE masked, sparse and auto, forward and forward+backward.

Inputs are the real hidden states that reach the FFN when real SST-2 text (128 x 128 =
16,384 tokens) runs through all-MiniLM-L6-v2, so routing is as skewed as it is in practice.
Every call takes a fresh batch of `--tokens` (4,096) of them, drawn at random, the same
sequence of batches for every path: per-expert token counts change from call to call, as in
real training and evaluation (where oneDNN runs bf16 products, a benchmark that repeats one
batch reuses the kernels oneDNN built for the first call's shapes, which real runs never do).
Two layers are measured:

* MiniLM layer `--layer` (real weights, 384 x 1536);
* a BERT-base-shaped layer (768 x 3072) made of two real MiniLM FFNs side by side
  (block-diagonal W1 and W2, input = the two layers' real inputs concatenated): real weights
  and real, skewed routing at BERT-base's shapes (no BERT-base weights are available offline).

Forward runs without autograd (inference); forward+backward computes input and weight
gradients. Times are medians of interleaved rounds, so ratios come from one run; "best
rounds" gives the ratios of each path's fastest round, which a noisy host disturbs less
(one path's calls spread by a third between rounds on this project's VM). The
notes say how skewed the routing is and which path `auto` takes (it decides per call from
the routed counts, separately for inference and training).

    python scripts/bench/bench_layer.py [--rounds 5] [--top-k 16 32] [--precision fp32 bf16]
        [--tokens 4096] [--token-counts 64 256 1024]

`--precision bf16` runs every path under bf16 autocast, against the dense FFN under the
same autocast (where oneDNN runs bf16, the sparse path pads each expert's pairs so that its
product shapes repeat: `emoe_cli/engine/cost_model.py`).

The C allocator keeps freed memory for reuse, as `emoe-run` has it (`emoe_cli/engine/allocator.py`);
`EMOE_MALLOC=system` times glibc's defaults instead, where every large block freed is
returned to the system and page-faults again when taken (slower and noisier, for every path).

OpenMP threads wait passively here (OMP_WAIT_POLICY=PASSIVE unless set), as `emoe-run` has
them (`emoe_cli/engine/openmp.py`): spinning threads take cores from the sparse path's per-expert
threads, and on a machine with more busy processes than cores from their peers.
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import argparse
import itertools
import statistics

import torch
import transformers
from common import allocator_setup, interleaved_times, make_batch, text_source
from torch import nn

from emoe_cli.models.pretrained import resolve_weights
from emoe_cli.moe.adapters import adapter_for
from emoe_cli.moe.convert import split_neurons
from emoe_cli.moe.layer import DenseFFN, EMoEFeedForward

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def ffn_inputs(model: nn.Module, batch: dict) -> list[torch.Tensor]:
    """The [tokens, d] input of every layer's FFN for `batch`."""
    captured = []
    hooks = [layer.intermediate.register_forward_hook(
        lambda _m, args, _out: captured.append(args[0].detach().reshape(-1, args[0].shape[-1])))
        for layer in model.encoder.layer]
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for hook in hooks:
        hook.remove()
    return captured


def side_by_side(a: DenseFFN, b: DenseFFN) -> DenseFFN:
    """One FFN computing `a` on the first half of its input and `b` on the second half."""
    return DenseFFN(w1=torch.block_diag(a.w1, b.w1), b1=torch.cat([a.b1, b.b1]),
                    w2=torch.block_diag(a.w2, b.w2), b2=torch.cat([a.b2, b.b2]), act=a.act)


class Dense(nn.Module):
    """The original FFN: two linear layers around the activation."""

    def __init__(self, ffn: DenseFFN) -> None:
        super().__init__()
        self.w1, self.w2, self.act = nn.Linear(1, 1), nn.Linear(1, 1), ffn.act
        self.w1.weight, self.w1.bias = nn.Parameter(ffn.w1.clone()), nn.Parameter(ffn.b1.clone())
        self.w2.weight, self.w2.bias = nn.Parameter(ffn.w2.clone()), nn.Parameter(ffn.b2.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act(self.w1(x)))


def jobs_for(layers: dict[str, nn.Module], batches: list[torch.Tensor], grad: torch.Tensor,
             dtype):
    """A forward job and a forward+backward job per layer. Each job's i-th call takes
    `batches[i]` (cycling), so every path sees the same sequence of batches."""
    autocast = torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)

    def next_batch():
        calls = itertools.cycle(batches)
        return lambda: next(calls)

    def forward(layer):
        batch = next_batch()

        def job():
            with torch.no_grad(), autocast:
                layer(batch())
        return job

    def train(layer):
        batch = next_batch()

        def job():
            xg = batch().clone().requires_grad_()
            with autocast:
                y = layer(xg)
            y.backward(grad.to(y.dtype))
            layer.zero_grad(set_to_none=True)
        return job

    return ({f"{n} fwd": forward(m) for n, m in layers.items()},
            {f"{n} fwd+bwd": train(m) for n, m in layers.items()})


def fresh_batches(pool: torch.Tensor, tokens: int, count: int) -> list[torch.Tensor]:
    """`count` batches of `tokens` tokens, each a different random draw from `pool`: real
    training and evaluation never route the same batch twice (see the module doc)."""
    generator = torch.Generator().manual_seed(0)
    return [pool[torch.randperm(pool.shape[0], generator=generator)[:tokens]]
            for _ in range(count)]


def bench(name: str, ffn: DenseFFN, pool: torch.Tensor, args, dtype=torch.float32) -> None:
    batches = fresh_batches(pool, args.tokens, args.rounds + 1)  # +1: the warm-up call
    x = batches[0]
    print(f"\n{name}: d={ffn.w1.shape[1]}, d_ff={ffn.d_ff}, {x.shape[0]} tokens a batch, "
          f"{dtype}")
    print(f"{'k/N':<8}{'path':<9}{'fwd ms':>9}{'fwd+bwd ms':>12}{'dense/path fwd':>16}"
          f"{'dense/path f+b':>16}{'best rounds':>14}   notes")
    for top_k in args.top_k:
        expert_of_neuron = split_neurons(ffn, args.num_experts, seed=0, split="cluster")
        layers = {"dense": Dense(ffn)}
        for execution in ("masked", "sparse", "auto"):
            layers[execution] = EMoEFeedForward(ffn, expert_of_neuron, top_k,
                                                execution=execution).train()
        for path in ("sparse", "auto"):
            check_equal(layers["masked"], layers[path], x)
        grad = torch.randn(x.shape[0], ffn.w2.shape[0], generator=torch.Generator().manual_seed(0))
        times, best = timed(*jobs_for(layers, batches, grad, dtype), args.rounds)
        notes = {"sparse": routing_notes(layers["sparse"], x, dtype),
                 "auto": auto_notes(layers["auto"], x, dtype)}
        for path in layers:
            f, t = times[f"{path} fwd"], times[f"{path} fwd+bwd"]
            print(f"{top_k}/{args.num_experts:<5}{path:<9}{1000 * f:>9.1f}{1000 * t:>12.1f}"
                  f"{times['dense fwd'] / f:>15.2f}x{times['dense fwd+bwd'] / t:>15.2f}x"
                  f"{best['dense fwd'] / best[f'{path} fwd']:>8.2f}/"
                  f"{best['dense fwd+bwd'] / best[f'{path} fwd+bwd']:.2f}"
                  f"   {notes.get(path, '')}")


def bench_sizes(name: str, ffn: DenseFFN, pool: torch.Tensor, args) -> None:
    """Masked, sparse and auto on smaller batches (drawn from `pool`), in fp32: where
    the per-expert steps cost more than the sparse path saves, `auto` should mask."""
    print(f"\n{name}: smaller batches, fp32, ms forward / forward+backward")
    print(f"{'k/N':<8}{'tokens':>7}{'masked':>16}{'sparse':>16}{'auto':>16}   auto ran (fwd, f+b)")
    for top_k in args.top_k:
        expert_of_neuron = split_neurons(ffn, args.num_experts, seed=0, split="cluster")
        layers = {execution: EMoEFeedForward(ffn, expert_of_neuron, top_k,
                                             execution=execution).train()
                  for execution in ("masked", "sparse", "auto")}
        for tokens in args.token_counts:
            batches = fresh_batches(pool, tokens, args.rounds + 1)
            grad = torch.randn(tokens, ffn.w2.shape[0],
                               generator=torch.Generator().manual_seed(0))
            times, _ = timed(*jobs_for(layers, batches, grad, torch.float32), args.rounds)
            cells = "".join(f"{1000 * times[f'{path} fwd']:>8.2f} /"
                            f"{1000 * times[f'{path} fwd+bwd']:>6.1f}" for path in layers)
            print(f"{top_k}/{args.num_experts:<5}{tokens:>7}{cells}   "
                  f"{auto_notes(layers['auto'], batches[0])}")


def timed(forward: dict, train: dict, rounds: int) -> tuple[dict, dict]:
    """Median and best seconds of each job: the forward jobs interleaved among themselves,
    then the training jobs (a forward right after another path's backward would run on
    caches and memory that the backward left, which inference never does)."""
    times = {**interleaved_times(forward, rounds), **interleaved_times(train, rounds)}
    return ({name: statistics.median(values) for name, values in times.items()},
            {name: min(values) for name, values in times.items()})


def plans(layer: EMoEFeedForward, x: torch.Tensor, dtype=torch.float32) -> list:
    """The sparse plan (or None: masking) of `layer` for `x` in inference and in training,
    routed and costed in `dtype` as the forward pass does."""
    found = []
    for training in (False, True):
        with torch.set_grad_enabled(training), torch.autocast(
                "cpu", dtype=dtype, enabled=dtype != torch.float32):
            chosen, weights = layer.route(x)
            found.append(layer.plan_sparse(chosen, weights.to(dtype)))
    return found


def routing_notes(layer: EMoEFeedForward, x: torch.Tensor, dtype=torch.float32) -> str:
    """How skewed the routing is, and how the sparse path splits it: token groups (each with
    its own masked block) and hot experts (masked in at least one group)."""
    chosen = layer.select_experts(x)
    busiest = torch.bincount(chosen.reshape(-1), minlength=layer.num_experts).max()
    fwd, train = (f"{max(len(plan.blocks), 1)} groups, {len(plan.hot)} hot"
                  for plan in plans(layer, x, dtype))
    return f"busiest expert gets {busiest / x.shape[0]:.0%} of tokens; fwd {fwd}, f+b {train}"


def auto_notes(layer: EMoEFeedForward, x: torch.Tensor, dtype=torch.float32) -> str:
    """The path `auto` takes for this input in inference (fwd) and in training (f+b)."""
    fwd, train = ("masked" if plan is None else "sparse" for plan in plans(layer, x, dtype))
    return f"runs {fwd} (fwd), {train} (f+b)"


def check_equal(masked: nn.Module, other: nn.Module, x: torch.Tensor) -> None:
    """Refuse to time two paths that do not compute the same function."""
    with torch.no_grad():
        want, got = masked(x), other(x)
    error = ((got - want).abs().max() / want.abs().max()).item()
    if error > 1e-4:
        raise SystemExit(f"{other.execution} and masked outputs differ: relative error {error:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-experts", type=int, default=64)
    parser.add_argument("--top-k", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--layer", type=int, default=3, help="MiniLM layer (0-5)")
    parser.add_argument("--precision", nargs="+", choices=list(DTYPES), default=["fp32"],
                        help="fp32, or bf16 autocast (as trainer.precision)")
    parser.add_argument("--tokens", type=int, default=4096,
                        help="tokens per batch, each batch drawn afresh from 128 x 128 tokens")
    parser.add_argument("--token-counts", type=int, nargs="*", default=[],
                        help="also time masked/sparse/auto on batches of these many tokens")
    args = parser.parse_args()
    allocator = allocator_setup()

    weights = resolve_weights("sentence-transformers/all-MiniLM-L6-v2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights)
    model = transformers.AutoModel.from_pretrained(weights).eval()
    inputs = ffn_inputs(model, make_batch(tokenizer, 128, 128))
    blocks = adapter_for(model).blocks(model)
    ffns = [adapter_for(model).read(block) for block in blocks]
    ffns = [DenseFFN(f.w1.detach(), f.b1.detach(), f.w2.detach(), f.b2.detach(), f.act)
            for f in ffns]
    print(f"Layer benchmark on {text_source()}; {torch.get_num_threads()} threads "
          f"(OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), torch {torch.__version__}; "
          f"medians of {args.rounds} interleaved rounds; {allocator}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start")
    a, b = args.layer, (args.layer + 1) % len(ffns)
    cases = [(f"MiniLM layer {a} (real weights)", ffns[a], inputs[a]),
             (f"BERT-base-shaped: MiniLM layers {a} and {b} side by side (real weights, "
              "block-diagonal)", side_by_side(ffns[a], ffns[b]),
              torch.cat([inputs[a], inputs[b]], dim=1))]
    torch.manual_seed(0)
    for precision in args.precision:
        for name, ffn, x in cases:
            bench(name, ffn, x, args, DTYPES[precision])
    for name, ffn, x in cases if args.token_counts else []:
        bench_sizes(name, ffn, x, args)


if __name__ == "__main__":
    main()
