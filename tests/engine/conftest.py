"""Fixtures for the sparse path's tests."""

import pytest

from emoe_cli.engine import dispatch as dispatch_module


@pytest.fixture
def gathered(monkeypatch):
    """Every pair gathered (no expert is hot, whatever its share of tokens), and a record of
    (threads, pairs) for each forward and backward of the gathered experts."""
    monkeypatch.setattr("emoe_cli.engine.strategy.hot_share",
                        lambda size, training, overhead=1.0: 1.0)
    calls = []
    of = dispatch_module._Runs.of.__func__

    def recording(cls, dispatch, device):
        run = of(cls, dispatch, device)
        calls.append((len(run.parts), run.starts[-1]))
        return run

    monkeypatch.setattr(dispatch_module._Runs, "of", classmethod(recording))
    return calls
