"""OpenMP's idle threads sleep in `emoe-run` (OMP_WAIT_POLICY=PASSIVE) unless the user chose.

OpenMP's default makes an idle thread spin for a while before it sleeps. The sparse EMoE
path runs its per-expert loops on threads of its own (`moe/expert_threads.py`), which then
compete with the spinning threads for the cores. Layer forward+backward at 16/64 in fp32,
x the dense FFN's speed (one A/B harness, fresh batches): BERT-base-shaped 2.22-2.33x under
the default against 2.44x with sleeping threads (1.73x with threads that spin forever,
ACTIVE), MiniLM's 1.44x against 1.64x. Spinning threads also take
cores from data-loader workers and from other runs sharing a node. Whole dense training
steps measured the same either way (MiniLM, batch 32 x 128: 2,537 and 2,572 ms).

OpenMP reads the variable once, when torch loads it, so this must run before torch is
imported; `emoe-run` calls it first thing. Child processes (sweep jobs) inherit it.
"""

from __future__ import annotations

import os

VARIABLE = "OMP_WAIT_POLICY"


def sleep_when_idle() -> None:
    """Set OMP_WAIT_POLICY=PASSIVE unless it is set."""
    os.environ.setdefault(VARIABLE, "PASSIVE")
