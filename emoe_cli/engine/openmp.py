"""OpenMP's idle threads sleep in `emoe-run` (OMP_WAIT_POLICY=PASSIVE) unless the user chose, so
that they leave the cores to the sparse path's threads; this must run before torch is imported
(measurements: `docs/performance.md`, "Sleeping OpenMP threads").
"""

from __future__ import annotations

import os

VARIABLE = "OMP_WAIT_POLICY"


def sleep_when_idle() -> None:
    """Set OMP_WAIT_POLICY=PASSIVE unless it is set."""
    os.environ.setdefault(VARIABLE, "PASSIVE")
