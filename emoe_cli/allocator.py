"""Keep freed CPU memory for reuse, so large tensors stop page-faulting on every step.

glibc returns every block above its mmap threshold (32 MB at most) to the system when it is
freed, and trims the top of its heap, so the next step's activations of the same size cost
a page fault per 4 KiB all over again. A training or evaluation loop allocates the same
sizes step after step, which is the case a caching allocator is made for: asked to serve
every block from its heap and never to trim it, glibc becomes one. Measured on this
project's 2-core VM (scripts/bench/bench_step.py, MiniLM, fp32, batch 32 x 128): a dense
training step took 2,830-2,989 ms with glibc's defaults and 2,456-2,498 ms so, EMoE's
masked path 3,591-3,654 against 2,633-3,004; peak memory stayed within 4 %. One
BERT-base-sized FFN forward (scripts/bench/bench_layer.py) took 304 ms against 214 in
fp32, and 108-168 ms against 100-112 in bf16, depending on which blocks glibc had just
given back.

`emoe-run` and `emoe-pretrain-vit` do this at start (the benchmarks too, to time what users
get). `EMOE_MALLOC=system` keeps glibc's defaults; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

from emoe_cli.errors import UserError

ENV = "EMOE_MALLOC"
CHOICES = ("reuse", "system")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's <malloc.h>
NEVER_TRIM = 2**31 - 1  # bytes of free heap top kept before trimming: the largest int


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse unless `EMOE_MALLOC=system`; True when it now
    does. Affects blocks allocated from now on, in this process only."""
    choice = os.environ.get(ENV, "reuse")
    if choice not in CHOICES:
        raise UserError(f"{ENV}={choice!r} is invalid; valid: {', '.join(CHOICES)}")
    mallopt = _glibc_mallopt() if choice == "reuse" else None
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


def _glibc_mallopt():
    """glibc's `mallopt`, or None where the C library is another (macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        return libc.mallopt
    except (OSError, AttributeError):
        return None
