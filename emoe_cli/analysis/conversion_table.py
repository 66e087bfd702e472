"""What a conversion keeps, over layers × k, before any training: the table behind
`emoe-inspect`.

One row per (split, layer set, k): the kept share of |activation| mass and the final hidden
state's change against dense (see `moe/fidelity.py`). A layer set is one block converted
alone, or the run's configured `moe.layers` converted together (its kept share is the mean
over its layers). The model is converted once per split, on every block the table needs;
blocks not being measured then compute their dense FFN (every expert, weight 1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from emoe_cli.moe.fidelity import change_when_routed, kept_shares, pooled_hidden

# convert(model, split, layers): install EMoE layers on `layers` with that split
Converter = Callable[[nn.Module, str, list[int]], None]


@dataclass
class InspectRow:
    """One cell of the table; `layers` is a block index, or the configured set as "2,4"."""

    split: str
    layers: str
    configured: bool
    top_k: int
    kept_share: float
    mean_cosine: float
    worst_cosine: float
    relative_l2: float

    def to_dict(self) -> dict:
        return asdict(self)


def label(layers: list[int]) -> str:
    return ",".join(str(i) for i in layers)


def conversion_table(dense: nn.Module, batch: dict[str, torch.Tensor], convert: Converter,
                     layers: list[int], configured: list[int], top_ks: list[int],
                     splits: list[str]) -> list[InspectRow]:
    """Rows for every split, every layer in `layers` alone and `configured` together, every
    k in `top_ks`. `dense` is left unconverted (each split converts a copy)."""
    reference = pooled_hidden(dense, batch)
    needed = sorted(set(layers) | set(configured))
    rows = []
    for split in splits:
        model = copy.deepcopy(dense)
        convert(model, split, needed)
        shares = kept_shares(model, batch, top_ks)
        for k in top_ks:
            for group in [[i] for i in layers] + [configured]:
                change = change_when_routed(model, batch, reference, dict.fromkeys(group, k))
                kept = sum(shares[i][k] for i in group) / len(group)
                rows.append(InspectRow(split, label(group), group is configured, k, kept,
                                       **change))
        del model
    return rows
