"""Training order that depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation per epoch, drawn from `seed + epoch` rather than a running generator.

    A run that restarts in epoch e calls `set_epoch(e)` and gets exactly the order the
    uninterrupted run had; accelerate calls `set_epoch` through its prepared loaders.
    """

    def __init__(self, num_examples: int, seed: int) -> None:
        self.num_examples, self.seed, self.epoch = num_examples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.num_examples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_examples


class DomainBatchSampler(Sampler[list[int]]):
    """Batches of `per_domain` rows from every training domain, drawn with replacement, as
    DomainBed's one infinite loader per domain does (`Vision/domainbed/lib/fast_data_loader.py:
    24-33`, zipped in `scripts/train.py:204`). An epoch is as many steps as the smallest domain
    fills (`train.py:208`); draws depend on (seed, epoch) only, so a resumed run repeats them.
    """

    def __init__(self, domains: list[int], per_domain: int, seed: int) -> None:
        order = np.asarray(domains)
        self.members = [np.flatnonzero(order == d) for d in sorted(set(domains))]
        self.per_domain, self.seed, self.epoch = per_domain, seed, 0
        self.steps = max(1, min(len(m) for m in self.members) // per_domain)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        for _ in range(self.steps):
            yield [int(rows[i]) for rows in self.members
                   for i in torch.randint(len(rows), (self.per_domain,), generator=generator)]

    def __len__(self) -> int:
        return self.steps
