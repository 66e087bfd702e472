"""A run's identity: a hash of what determines its results, so a relaunch can skip it.

Two runs with the same identity train the same model on the same data with the same
settings. Keys that only say where things are written or logged (`sweep.identity_ignore`,
e.g. `logger`, `data.root`, `trainer.num_workers`) are left out of the hash, so moving the
data or the outputs, or switching wandb off, does not make a finished run look new.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any

IDENTITY_LENGTH = 16  # hex digits: 64 bits, plenty for a few thousand runs


def without_keys(config: dict[str, Any], dotted_keys: Iterable[str]) -> dict[str, Any]:
    """A copy of `config` with each dotted key (`data.root`, `logger`) removed if present."""
    trimmed = copy.deepcopy(config)
    for dotted in dotted_keys:
        *parents, leaf = dotted.split(".")
        node = trimmed
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return trimmed


def run_identity(config: dict[str, Any], ignore: Iterable[str] = ()) -> str:
    """A short stable hash of the resolved config less the `ignore` keys.

    The config is serialised with sorted keys, so the order keys were composed in does not
    matter; values keep their types (`1` and `1.0` differ, as they do to the code).
    """
    canonical = json.dumps(without_keys(config, ignore), sort_keys=True, default=str,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:IDENTITY_LENGTH]
