"""Turn SIGTERM and the first Ctrl-C into a request to stop at the next safe point.

Cluster schedulers send SIGTERM before they kill a job; stopping between optimiser steps
lets the loop save a checkpoint that resumes exactly. A second Ctrl-C interrupts at once.
Under submitit (Hydra's SLURM launcher) the job also has a handler for SIGUSR2, the signal
SLURM sends before a time limit or preemption; that signal is honoured the same way and then
passed on, so submitit requeues the job, which resumes from the checkpoint.
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Installed with `with StopRequest() as stop:`; `stop.signal_name` is set once asked."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    REQUEUE_SIGNAL = signal.SIGUSR2

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}
        self._pass_on = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread
        numbers = list(self.SIGNALS)
        if callable(signal.getsignal(self.REQUEUE_SIGNAL)):  # a launcher wants this signal
            numbers.append(self.REQUEUE_SIGNAL)
        for number in numbers:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame) -> None:
        if self.requested and number == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signal_name = signal.Signals(number).name
        if number == self.REQUEUE_SIGNAL:
            handler = self._previous[number]
            self._pass_on = lambda: handler(number, None)

    def pass_on(self) -> None:
        """Hand the signal to the launcher's own handler (submitit: requeue), if it had one."""
        if self._pass_on is not None:
            self._pass_on()
