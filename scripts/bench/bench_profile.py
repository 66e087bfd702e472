"""Training-step time of EMoE under `profile=official` against `profile=clean`.

The official profile adds routing work (router noise, priority token dropping, the `b2`
split), expert dropout masks and Tutel's balancing loss on every converted layer; it should
cost little beside the FFN itself (target: official/clean <= 1.05). Each step is what
`emoe_cli/training/loop.py` runs: forward, the balancing loss where the profile weights it,
backward, gradient clipping where the profile keeps it (clean: 1.0; official: none),
AdamW, router refresh. Models, batch and timing as in bench_step.py (real SST-2 text,
interleaved medians; `--model bert-base` is randomly initialised, so its routing is less
skewed than real weights give).

    python scripts/bench/bench_profile.py --model minilm [--steps 6] [--layers all]
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import argparse
import copy
import time

import torch
import transformers
from bench_step import MINILM, build_dense, step_job
from common import allocator_setup, interleaved_medians, make_batch, text_source

from emoe_cli.models.pretrained import resolve_weights
from emoe_cli.moe import balance_loss, emoe_modules, emoefy
from emoe_cli.moe.profile import PROFILES


def profile_step_job(model: torch.nn.Module, batch: dict, profile_name: str, precision: str,
                     same_clipping: bool = False):
    """One training step of the loop under `profile_name`, as a closure; `same_clipping`
    clips both profiles alike (at 1.0), to time the layers' extras alone."""
    profile = PROFILES[profile_name]
    clip = 1.0 if same_clipping or profile.max_grad_norm is None else profile.max_grad_norm
    layers = list(emoe_modules(model))
    extra = ((lambda: profile.balance_loss_weight * balance_loss(layers))
             if profile.balance_loss_weight else None)
    return step_job(model, batch, precision, extra_loss=extra, clip=clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["minilm", "bert-base"], default="minilm")
    parser.add_argument("--steps", type=int, default=6, help="timed rounds per profile")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--num-experts", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=16)
    parser.add_argument("--layers", default="all", help="'all' or comma-separated indices")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--execution", default="auto", choices=["auto", "masked", "sparse"])
    parser.add_argument("--same-clipping", action="store_true",
                        help="clip both at 1.0 (official clips nothing): the layers' cost alone")
    args = parser.parse_args()
    allocator = allocator_setup()
    layers = args.layers if args.layers == "all" else [int(i) for i in args.layers.split(",")]

    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_weights(MINILM))
    batch = make_batch(tokenizer, args.batch_size, args.seq_len)
    started = time.perf_counter()
    dense = build_dense(args.model)
    jobs = {name: profile_step_job(emoefy(copy.deepcopy(dense), args.num_experts, args.top_k,
                                          layers=layers, execution=args.execution, profile=name),
                                   batch, name, args.precision, args.same_clipping)
            for name in ("clean", "official")}
    print(f"{args.model} training step, batch {args.batch_size} x {args.seq_len} of "
          f"{text_source()}, {args.precision}, EMoE N={args.num_experts} k={args.top_k} "
          f"layers {args.layers}, execution {args.execution}, "
          f"{'same clipping' if args.same_clipping else 'each profile its clipping'}; "
          f"{torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; {allocator}; built in "
          f"{time.perf_counter() - started:.0f}s; medians of {args.steps} interleaved steps")
    times = interleaved_medians(jobs, args.steps)
    for name, seconds in times.items():
        print(f"{name:<10}{1000 * seconds:>10.0f} ms/step")
    print(f"official/clean {times['official'] / times['clean']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
