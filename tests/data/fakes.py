"""A stand-in for `datasets.load_dataset` that records what was asked of the hub."""

from __future__ import annotations

import datasets


class FakeHub:
    """Serves in-memory tables by hub path and records each (path, config, split, options)."""

    def __init__(self, tables: dict[str, dict | datasets.Dataset]):
        self.tables = tables
        self.calls: list[tuple] = []

    def __call__(self, path, name=None, split=None, **options):
        self.calls.append((path, name, split, options))
        table = self.tables[path]
        return table if isinstance(table, datasets.Dataset) else datasets.Dataset.from_dict(table)


def install(monkeypatch, tables) -> FakeHub:
    """Route every hub load in this test to `tables`."""
    hub = FakeHub(tables)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    return hub


def offline(monkeypatch) -> None:
    """Make every hub load fail as it does without a network."""

    def fail(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", fail)

