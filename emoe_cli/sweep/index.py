"""The index of completed runs: one small file per identity, pointing at its results.json.

A file per identity needs no locking: parallel jobs (submitit, SLURM arrays, joblib) each
write their own entry atomically. An entry counts only while the results.json it points
to still exists, says `completed` and carries the same identity, so deleting a run's
folder is enough to have it run again. A damaged entry or record (not a JSON object, no
`results`) counts as not completed, with one warning line naming the file: one bad file
must not stop a sweep, `emoe-grid --status` or `--reindex`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from emoe_cli.tracking.records import RESULTS_FILE, BadRecord, read_json_object, write_json_atomic

log = logging.getLogger("emoe")
INDEX_HINT = "ignored; delete it, or rebuild the index with emoe-grid --reindex DIR"
RECORD_HINT = "ignored as not completed; delete it (or its run folder) to run it again"


def _entry(index_dir: str | Path, identity: str) -> Path:
    return Path(index_dir) / f"{identity}.json"


def read_record(path: str | Path, hint: str = RECORD_HINT) -> dict[str, Any] | None:
    """A results.json (or index entry) as a dict; None if it is missing or not a JSON object.

    A missing file is silent (a run not written yet, or deleted); one that is there but
    unusable gets one warning line naming it, followed by `hint` (what to do about it).
    """
    try:
        return read_json_object(path)[0]
    except OSError:
        return None
    except BadRecord as error:
        log.warning("%s: %s; %s", path, error, hint)
        return None


def is_completed(record: dict[str, Any] | None, identity: str) -> bool:
    return bool(record) and record.get("status") == "completed" and (
        record.get("identity") == identity)


def find_completed(index_dir: str | Path, identity: str) -> Path | None:
    """The results.json of a completed run with this identity, if the index knows one."""
    path = _entry(index_dir, identity)
    entry = read_record(path, INDEX_HINT)
    if entry is None:
        return None
    results = entry.get("results")
    if not isinstance(results, str) or not results:
        log.warning("%s: index entry has no `results` path; %s", path, INDEX_HINT)
        return None
    return Path(results) if is_completed(read_record(results), identity) else None


def add_completed(index_dir: str | Path, identity: str, results: str | Path) -> None:
    """Point the index at a completed run's results.json (absolute, so any cwd finds it)."""
    write_json_atomic(_entry(index_dir, identity),
                      {"identity": identity, "results": str(Path(results).resolve())})


def reindex(index_dir: str | Path, roots: list[str | Path]) -> int:
    """Add every completed results.json under `roots` (runs moved or copied from elsewhere).

    Returns how many entries were written; unusable records are skipped with a warning.
    """
    added = 0
    for root in roots:
        for path in sorted(Path(root).rglob(RESULTS_FILE)):
            record = read_record(path, "skipped; delete it or rerun that run")
            identity = (record or {}).get("identity")
            if isinstance(identity, str) and is_completed(record, identity):
                add_completed(index_dir, identity, path)
                added += 1
    return added
