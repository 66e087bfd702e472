"""Training-step time of EMoE against the dense model on MiniLM (N=64, k=16, all layers).

Prints milliseconds per step for each and the EMoE/dense ratio. Batches are real SST-2
sentences when ../shared/data is present (else a fixed random batch), padded to --seq-len.

    python scripts/bench/bench_step.py [--steps 20] [--batch-size 32] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import transformers

from emoe_cli.models import resolve_weights
from emoe_cli.moe import attach_router_refresh, emoefy

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "SST-2" / "train.tsv"


def make_batch(tokenizer, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    if DATA.exists():
        lines = DATA.read_text().splitlines()[1:]
        texts = [" ".join(line.split("\t")[0] for line in lines[i::batch_size][:8])
                 for i in range(batch_size)]  # several sentences each, to fill seq_len
    else:
        texts = [" ".join(["token"] * seq_len)] * batch_size
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len,
                      return_tensors="pt")
    batch["labels"] = torch.arange(batch_size) % 2
    return dict(batch)


def time_steps(model: torch.nn.Module, batch: dict, steps: int, warmup: int = 3) -> list[float]:
    """Seconds per optimiser step (forward, backward, AdamW, router refresh)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    attach_router_refresh(optimizer, model)
    times = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--num-experts", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=16)
    parser.add_argument("--layers", default="all")
    args = parser.parse_args()

    weights = resolve_weights("sentence-transformers/all-MiniLM-L6-v2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights)
    torch.manual_seed(0)
    dense = transformers.AutoModelForSequenceClassification.from_pretrained(weights, num_labels=2)
    started = time.perf_counter()
    moe = emoefy(copy.deepcopy(dense), args.num_experts, args.top_k, layers=args.layers)
    convert_seconds = time.perf_counter() - started
    batch = make_batch(tokenizer, args.batch_size, args.seq_len)

    # Interleave the two models so machine noise hits both alike.
    dense_times, moe_times = [], []
    for _ in range(2):
        dense_times += time_steps(dense, batch, args.steps // 2)
        moe_times += time_steps(moe, batch, args.steps // 2)
    dense_ms = 1000 * statistics.median(dense_times)
    moe_ms = 1000 * statistics.median(moe_times)
    print(f"MiniLM training step, batch {args.batch_size} x {args.seq_len} tokens, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"EMoE N={args.num_experts} k={args.top_k} layers={args.layers}: conversion "
          f"{convert_seconds:.1f}s")
    print(f"{'model':<8}{'ms/step (median)':>18}")
    print(f"{'dense':<8}{dense_ms:>18.1f}")
    print(f"{'emoe':<8}{moe_ms:>18.1f}")
    print(f"EMoE/dense step-time ratio: {moe_ms / dense_ms:.3f}")


if __name__ == "__main__":
    main()
