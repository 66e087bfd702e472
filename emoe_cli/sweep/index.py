"""The index of completed runs: one small file per identity, pointing at its results.json.

A file per identity needs no locking: parallel jobs (submitit, SLURM arrays, joblib) each
write their own entry atomically. An entry counts only while the results.json it points
to still exists, says `completed` and carries the same identity, so deleting a run's
folder is enough to have it run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emoe_cli.records import RESULTS_FILE, write_json_atomic


def _entry(index_dir: str | Path, identity: str) -> Path:
    return Path(index_dir) / f"{identity}.json"


def read_record(path: str | Path) -> dict[str, Any] | None:
    """A results.json as a dict, or None if it is missing or unreadable (e.g. mid-copy)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_completed(record: dict[str, Any] | None, identity: str) -> bool:
    return bool(record) and record.get("status") == "completed" and (
        record.get("identity") == identity)


def find_completed(index_dir: str | Path, identity: str) -> Path | None:
    """The results.json of a completed run with this identity, if the index knows one."""
    entry = read_record(_entry(index_dir, identity))
    if not entry:
        return None
    results = Path(entry["results"])
    return results if is_completed(read_record(results), identity) else None


def add_completed(index_dir: str | Path, identity: str, results: str | Path) -> None:
    """Point the index at a completed run's results.json (absolute, so any cwd finds it)."""
    write_json_atomic(_entry(index_dir, identity),
                      {"identity": identity, "results": str(Path(results).resolve())})


def reindex(index_dir: str | Path, roots: list[str | Path]) -> int:
    """Add every completed results.json under `roots` (runs moved or copied from elsewhere).

    Returns how many entries were written.
    """
    added = 0
    for root in roots:
        for path in sorted(Path(root).rglob(RESULTS_FILE)):
            record = read_record(path)
            identity = (record or {}).get("identity")
            if identity and is_completed(record, identity):
                add_completed(index_dir, identity, path)
                added += 1
    return added
