"""One live run per identity: an exclusive `flock` on `<checkpoint_dir>/<identity>.lock`.

Two runs with the same identity (a sweep launched twice, a value repeated under a parallel
launcher) would otherwise share one checkpoint folder: the second resumes from the first's
live checkpoint, or deletes it, and one of them loses its work. The second run does not
wait: it is skipped at once with a message naming the run that holds the lock. Waiting would
hold a worker (and under `sweep.one_gpu_per_job` a GPU) idle for the whole of the other run,
only to find the same result ready at the end. The kernel drops a `flock` when its holder
exits in any way, SIGKILL included, so a crashed run never leaves its identity locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class IdentityBusy(Exception):
    """Another live process holds this identity; `note` is the note it left in the lock."""

    def __init__(self, path: Path, note: str, pid: str) -> None:
        super().__init__(f"{path} is held by {pid or 'another process'}")
        self.path, self.note, self.pid = path, note, pid


class IdentityLock:
    """`with IdentityLock(path, note):` holds the lock, or raises IdentityBusy at once.

    `note` (where the holder writes its results) is written into the file, so that a skipped
    run can say where the live one records. The file is removed on release.
    """

    def __init__(self, path: str | Path, note: str = "") -> None:
        self.path, self.note = Path(path), note
        self._fd: int | None = None

    def __enter__(self) -> IdentityLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> IdentityLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                note, _, pid = os.read(fd, 4096).decode(errors="replace").partition("\n")
                os.close(fd)
                raise IdentityBusy(self.path, note, pid) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file between our open and lock: retry
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.note}\npid {os.getpid()}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held, so no one locks a dead file
        os.close(self._fd)
        self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        found, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)
