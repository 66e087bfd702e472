"""Turn SIGTERM and the first Ctrl-C into a request to stop at the next safe point.

Cluster schedulers send SIGTERM before they kill a job; stopping between optimiser steps
lets the loop save a checkpoint that resumes exactly. A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Installed with `with StopRequest() as stop:`; `stop.signal_name` is set once asked."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
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
