"""SIGTERM and a first Ctrl-C ask the loop to stop; a second Ctrl-C interrupts at once."""

import os
import signal
import time

import pytest

from emoe_cli.training.signals import StopRequest


def _deliver(number: int) -> None:
    os.kill(os.getpid(), number)
    time.sleep(0.05)  # Python runs the handler between bytecodes, on the main thread


def test_a_first_ctrl_c_asks_to_stop_and_a_second_interrupts_at_once():
    previous = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        assert not stop.requested
        _deliver(signal.SIGINT)
        assert stop.requested and stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            _deliver(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored on the way out


def test_sigterm_only_asks_however_often_it_comes():
    with StopRequest() as stop:
        _deliver(signal.SIGTERM)
        _deliver(signal.SIGTERM)
        assert stop.signal_name == "SIGTERM"
