"""One job per GPU for local multiruns: each run locks a free GPU and sees only that one.

Launchers that run jobs side by side on one machine (joblib, submitit_local) do not
place them on GPUs. A lock file per GPU does it for any of them: a job takes the first GPU
whose lock it can get, sets CUDA_VISIBLE_DEVICES before CUDA starts, and the lock is freed
by the OS when the job ends, even if it crashes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("emoe")


_held: IO | None = None  # the lock this process holds; kept until the process ends


def visible_gpus() -> list[str]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`.

    Not torch.cuda.device_count(): once CUDA has counted devices it ignores later changes
    to CUDA_VISIBLE_DEVICES, which is how the GPU is assigned.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    try:
        found = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return [str(i) for i, line in enumerate(found.stdout.splitlines()) if line.startswith("GPU")]


def claim_gpu(lock_dir: str | Path, poll_seconds: float = 5.0,
              timeout_seconds: float | None = None) -> IO | None:
    """Lock a free GPU, restrict this process to it, and return the open lock file.

    A process keeps its GPU for life: launchers such as joblib reuse worker processes,
    and CUDA cannot move to another device once started. Waits while every GPU is taken;
    returns None when there is no GPU at all.
    """
    global _held
    if _held is not None:
        return _held
    gpus = visible_gpus()
    if not gpus:
        return None
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while True:
        for gpu in gpus:
            handle = open(Path(lock_dir) / f"gpu-{gpu}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            log.info("this run uses GPU %s", gpu)
            _held = handle
            return handle
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            raise TimeoutError(f"no free GPU among {', '.join(gpus)} in {timeout_seconds} s")
        time.sleep(poll_seconds)
