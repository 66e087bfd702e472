"""Every folder a run will write to is checked before any work, not found read-only an epoch in.

The check creates and removes a file in the folder (or, while it does not exist yet, in the
nearest folder above it that does), which also catches what permission bits do not show:
read-only mounts, a full quota, a path through a regular file, a root user on a read-only
file system. Nothing is left behind, so a run that fails later has made no folders.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from emoe_cli.errors import UserError


def unwritable(folder: str | Path) -> str | None:
    """Why no file can be written into `folder` (or the folders that would make it), or None."""
    path = Path(folder).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".emoe-write-check-"):
            pass
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def require_writable(folders: Mapping[str, str | Path]) -> None:
    """UserError naming the first `{config key: folder}` that cannot be written to."""
    for key, folder in folders.items():
        reason = unwritable(folder)
        if reason is not None:
            raise UserError(f"{key}={folder}: not writable ({reason}); valid: a folder this "
                            "user can create files in")


class OutputDirCheck(Callback):
    """Before Hydra makes the run's (or sweep's) folder: one line, exit 2, if it cannot.

    Hydra would fail on it with a traceback; configured under `hydra.callbacks`.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check("hydra.sweep.dir", config.hydra.sweep.dir)

    @staticmethod
    def _check(key: str, folder: str) -> None:
        reason = unwritable(folder)
        if reason is not None:
            print(f"emoe-run: error: {key}={folder}: not writable ({reason}); valid: a folder "
                  "this user can create files in", file=sys.stderr)
            sys.exit(2)
