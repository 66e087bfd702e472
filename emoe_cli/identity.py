"""A run's identity: a hash of the resolved config, so the same experiment is found again.

Keys that change where things are written or how they are watched, but not what is
computed, are left out: rerunning an experiment with another logger or checkpoint folder is
still the same experiment.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

NOT_PART_OF_IDENTITY = (
    "logger",
    "trainer.num_workers",
    "trainer.checkpoint",
    "trainer.checkpoint_dir",
    "trainer.resume",
    "trainer.keep_checkpoint",
)


def run_identity(config: dict[str, Any]) -> str:
    """16 hex digits identifying the experiment that the resolved `config` describes."""
    kept = json.loads(json.dumps(config, default=str))
    for dotted in NOT_PART_OF_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = kept
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
