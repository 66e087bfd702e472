"""Training-step time and peak memory of EMoE (all layers converted) against the dense model.

Prints milliseconds per step (forward, backward, AdamW, router refresh) for the dense model
and for EMoE under each execution path, the EMoE/dense ratios, and (with --memory) the peak
resident memory of each, in a fresh subprocess per model: the kernel's high-water mark
(VmHWM) is reset just before two training steps and read after them, so building the model
and the other models' runs cannot leak into it (`ru_maxrss` would: it survives exec, and a
child forked from this big process starts at the parent's size). Batches are real SST-2 sentences.

* `--model minilm`: the real all-MiniLM-L6-v2 weights (384 x 1536, 6 layers).
* `--model bert-base`: a BERT-base-sized model (768 x 3072, 12 layers) randomly initialised
  from a `BertConfig` (no BERT-base weights offline here); its routing is therefore less
  skewed than real weights give.

    python scripts/bench/bench_step.py --model minilm [--steps 6] [--precision bf16] [--memory]

OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE unless set) and the C allocator
keeps freed memory, as `emoe-run` has them (`EMOE_MALLOC=system`: glibc's defaults): see
bench_layer.py.
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import argparse
import copy
import subprocess
import sys
import time
from pathlib import Path

import torch
import transformers
from common import allocator_setup, interleaved_medians, make_batch, text_source

from emoe_cli.models.pretrained import resolve_weights
from emoe_cli.moe import attach_router_refresh, emoefy

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def build_dense(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "minilm":
        return transformers.AutoModelForSequenceClassification.from_pretrained(
            resolve_weights(MINILM), num_labels=2)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                     num_attention_heads=12, intermediate_size=3072,
                                     num_labels=2)
    return transformers.BertForSequenceClassification(config)


def step_job(model: torch.nn.Module, batch: dict, precision: str, extra_loss=None,
             clip: float = 0.0):
    """One optimiser step as a closure (AdamW with the router refresh hook attached);
    `extra_loss()` joins the task loss and `clip` > 0 clips the gradient norm, as the
    training loop does (bench_profile.py times the profiles through these)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    attach_router_refresh(optimizer, model)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def job():
        with autocast:
            loss = model(**batch).loss
            if extra_loss is not None:
                loss = loss + extra_loss()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return job


def models(args) -> dict[str, torch.nn.Module]:
    dense = build_dense(args.model)
    found = {"dense": dense}
    for execution in args.executions:
        found[f"emoe {execution}"] = emoefy(copy.deepcopy(dense), args.num_experts, args.top_k,
                                            layers="all", execution=execution)
    return found


def peak_memory_mib(args, which: str) -> tuple[float, float]:
    """Peak RSS of `--steps 2` of one model in a fresh process, and its RSS before training."""
    command = [sys.executable, __file__, "--model", args.model, "--precision", args.precision,
               "--num-experts", str(args.num_experts), "--top-k", str(args.top_k),
               "--only", which]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return float(fields["peak_mib"]), float(fields["before_mib"])


def rss_mib(field: str) -> float:
    """`VmRSS` (now) or `VmHWM` (peak since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"{field} not in /proc/self/status: peak memory needs Linux")


def only(args) -> None:
    """Child process of --memory: build one model, run two steps, print the peaks."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_weights(MINILM))
    batch = make_batch(tokenizer, args.batch_size, args.seq_len)
    dense = build_dense(args.model)
    model = dense if args.only == "dense" else emoefy(
        dense, args.num_experts, args.top_k, layers="all", execution=args.only.split()[-1])
    job = step_job(model, batch, args.precision)
    before = rss_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to now
    for _ in range(2):
        job()
    print(f"before_mib={before}\npeak_mib={rss_mib('VmHWM')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["minilm", "bert-base"], default="minilm")
    parser.add_argument("--steps", type=int, default=6, help="timed rounds per model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--num-experts", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=16)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--executions", nargs="+", default=["auto", "masked"])
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    allocator = allocator_setup()  # in --memory's children too: they measure the same setup
    if args.only:
        return only(args)

    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_weights(MINILM))
    batch = make_batch(tokenizer, args.batch_size, args.seq_len)
    started = time.perf_counter()
    found = models(args)
    print(f"{args.model} training step, batch {args.batch_size} x {args.seq_len} of "
          f"{text_source()}, {args.precision}, EMoE N={args.num_experts} k={args.top_k} all "
          f"layers; {torch.get_num_threads()} threads (OMP_WAIT_POLICY="
          f"{os.environ['OMP_WAIT_POLICY']}), torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {allocator}; built in "
          f"{time.perf_counter() - started:.0f}s; medians of {args.steps} interleaved steps")
    times = interleaved_medians({n: step_job(m, batch, args.precision)
                                 for n, m in found.items()}, args.steps)
    memory = {n: peak_memory_mib(args, n) for n in found} if args.memory else {}
    print(f"{'model':<14}{'ms/step':>10}{'/dense':>8}{'peak MiB':>10}{'/dense':>8}"
          f"{'training MiB':>14}{'/dense':>8}")
    for name, seconds in times.items():
        line = f"{name:<14}{1000 * seconds:>10.0f}{seconds / times['dense']:>8.2f}"
        if memory:
            (peak, before), (dense_peak, dense_before) = memory[name], memory["dense"]
            dense_training = dense_peak - dense_before
            ratio = (f"{(peak - before) / dense_training:>8.2f}" if dense_training > 0
                     else f"{'-':>8}")
            line += (f"{peak:>10.0f}{peak / dense_peak:>8.2f}{peak - before:>14.0f}{ratio}")
        print(line)
    print("ms/step /dense below 1 means EMoE is faster; 'training MiB' is the peak minus the "
          "memory held before the first step.")


if __name__ == "__main__":
    main()
