"""Helpers shared by the benchmarks: a batch of real SST-2 text and interleaved timing."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from emoe_cli.engine.allocator import keep_freed_memory

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "SST-2" / "train.tsv"


def make_batch(tokenizer, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """`batch_size` rows of real SST-2 sentences (several per row, to fill `seq_len`)."""
    if DATA.exists():
        lines = DATA.read_text().splitlines()[1:]
        texts = [" ".join(line.split("\t")[0] for line in lines[i::batch_size][:8])
                 for i in range(batch_size)]
    else:
        texts = [" ".join(["token"] * seq_len)] * batch_size
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len,
                      return_tensors="pt")
    batch["labels"] = torch.arange(batch_size) % 2
    return dict(batch)


def text_source() -> str:
    return f"real SST-2 text ({DATA})" if DATA.exists() else "a fixed dummy text (no SST-2 here)"


def interleaved_times(jobs: dict[str, Callable[[], None]], rounds: int,
                      warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each job in each round, the jobs run in turns so a busy machine slows them
    all alike."""
    for job in jobs.values():
        for _ in range(warmup):
            job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    # A fresh, seeded shuffle each round: no job always runs right after the same other one
    # (the one before leaves the caches and the allocator in its own state). Rotating one
    # fixed order would not do: every job would keep its neighbour.
    order = random.Random(0)
    for _ in range(rounds):
        for name in order.sample(list(jobs), len(jobs)):
            started = time.perf_counter()
            jobs[name]()
            times[name].append(time.perf_counter() - started)
    return times


def interleaved_medians(jobs: dict[str, Callable[[], None]], rounds: int,
                        warmup: int = 1) -> dict[str, float]:
    """Median seconds of each job over interleaved rounds (`interleaved_times`)."""
    return {name: statistics.median(values)
            for name, values in interleaved_times(jobs, rounds, warmup).items()}


def allocator_setup() -> str:
    """Set up the C allocator as `emoe-run` does (`emoe_cli/engine/allocator.py`) and say how."""
    if keep_freed_memory():
        return "glibc keeping freed memory for reuse, as emoe-run does"
    return "the C library's default allocator (EMOE_MALLOC=system, or not glibc)"
