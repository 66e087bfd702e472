"""One thread per core for the sparse path's per-expert loops, each single-threaded, because thin
products split across every core wait on each other (measurements: `docs/performance.md`, "One
thread per core").
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

import torch

T = TypeVar("T")


MAX_THREADS = 8  # with more cores, each of these threads gets several intra-op threads


def thread_count(device: torch.device) -> int:
    """How many threads share a call's per-expert loops: on CPU the calling thread's intra-op
    thread count, at most `MAX_THREADS` (each thread's run adds into its own buffer of the
    layer's output size, and so many experts per run keep the runs balanced); 1 on other
    devices and where OpenMP's threads spin forever (`OMP_WAIT_POLICY=ACTIVE`, see the
    module doc). Only measured on 2 cores."""
    if device.type != "cpu" or os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE":
        return 1
    return min(torch.get_num_threads(), MAX_THREADS)


def _intra_op_threads() -> int:
    """Intra-op threads for each expert thread: the calling thread's cores shared out."""
    cores = torch.get_num_threads()
    return max(1, cores // min(cores, MAX_THREADS))


def runs(sizes: Sequence[int], count: int) -> list[range]:
    """`sizes` (pairs per expert, in order) cut into at most `count` contiguous runs of about
    equal total: each cut falls at the expert boundary nearest its share of the pairs, so
    runs differ by at most about one expert's pairs. Empty runs are left out."""
    before = [0, *itertools.accumulate(sizes)]  # pairs before each expert boundary
    cuts = [0]
    for part in range(1, count):
        target = before[-1] * part / count
        at = bisect.bisect_left(before, target)  # the first boundary at or past the target
        if at == len(before) or (at > 0 and target - before[at - 1] <= before[at] - target):
            at -= 1
        cuts.append(max(cuts[-1], at))
    cuts.append(len(sizes))
    return [range(lo, hi) for lo, hi in itertools.pairwise(cuts) if hi > lo]


def run_each(task: Callable[[int, range], T], parts: Sequence[range]) -> list[T]:
    """`task(index, part)` for every part, each on its own thread (the calling thread when
    there is one part), without autograd (in inference mode when the caller is in it);
    returns the results in part order once all are done. An exception in any part is raised
    after every part has stopped."""
    mode = torch.inference_mode if torch.is_inference_mode_enabled() else torch.no_grad
    if len(parts) <= 1:
        with mode():
            return [task(index, part) for index, part in enumerate(parts)]
    pool = _POOL.get(len(parts), _intra_op_threads())
    futures = [pool.submit(_in_mode, mode, task, index, part)
               for index, part in enumerate(parts)]
    wait(futures)
    return [future.result() for future in futures]


def _in_mode(mode, task, *args):
    # Grad and inference mode are per thread. These threads write into preallocated tensors
    # (`out=`), which autograd refuses when an input requires grad, and which must be
    # written in inference mode when the caller made them in it.
    with mode():
        return task(*args)


def _set_intra_op_threads(count: int) -> None:
    # torch sets a thread's intra-op count from the process-wide default on the thread's
    # first parallel call (`torch.get_num_threads` makes one), whatever was set before it:
    # so that call first, then this thread's count.
    torch.get_num_threads()
    torch.set_num_threads(count)


class _Pool:
    """A thread pool whose threads each run torch operations on `intra_op` threads."""

    def __init__(self) -> None:
        self.executor: ThreadPoolExecutor | None = None
        self.size = self.intra_op = 0
        self.lock = threading.Lock()

    def get(self, size: int, intra_op: int) -> ThreadPoolExecutor:
        with self.lock:
            if self.executor is None or self.size < size or self.intra_op != intra_op:
                if self.executor is not None:
                    self.executor.shutdown(wait=False)
                self.executor = self._start(size, intra_op)
                self.size, self.intra_op = size, intra_op
            return self.executor

    @staticmethod
    def _start(size: int, intra_op: int) -> ThreadPoolExecutor:
        threads = torch.get_num_threads()
        executor = ThreadPoolExecutor(size, thread_name_prefix="emoe-experts",
                                      initializer=_set_intra_op_threads, initargs=(intra_op,))
        # Make every thread start now (each waits for all the others), so all have run the
        # initializer; then restore the process-wide default it changed, which threads
        # started later would otherwise inherit.
        started = threading.Barrier(size)
        wait([executor.submit(started.wait) for _ in range(size)])
        torch.set_num_threads(threads)
        return executor

    def forget(self) -> None:
        """In a forked child the threads do not exist: start afresh when next needed."""
        self.executor, self.size, self.intra_op, self.lock = None, 0, 0, threading.Lock()


_POOL = _Pool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.forget)

