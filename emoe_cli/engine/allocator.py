"""Keep freed CPU memory for reuse (unless `EMOE_MALLOC=system`), so large tensors stop
page-faulting on every step (measurements: `docs/performance.md`, "The allocator").
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
