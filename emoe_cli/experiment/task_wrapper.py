"""What ends a run, turned into its record's status, one line on stderr and an exit code, as
lightning-hydra-template's `task_wrapper` does: the recipe itself stays free of error handling,
and a crash in a sweep is recorded instead of lost."""

from __future__ import annotations

import signal
import sys
import traceback
from types import TracebackType

from emoe_cli.errors import RunFailure, RunInterrupted, UserError
from emoe_cli.tracking.records import RunRecord

USER_ERROR_EXIT = 2


class TaskWrapper:
    """`with TaskWrapper(record, multirun) as wrapped: <the run>`, then `wrapped.exit_code`.

    User errors (2) and explained failures (1) end the block quietly after one line; a stop
    request (128 + the signal), a second Ctrl-C or a launcher's exit (130) are recorded as
    `interrupted` and go on up, as does any other error outside a sweep, with its traceback
    in the record; inside a sweep it is printed and the sweep goes on.
    """

    def __init__(self, record: RunRecord, multirun: bool) -> None:
        self.record, self.multirun, self.exit_code = record, multirun, 0

    def __enter__(self) -> TaskWrapper:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> bool:
        record = self.record
        if error is None:
            record.status = "completed"
            return False
        if isinstance(error, UserError):
            record.status, record.error, self.exit_code = "failed", str(error), USER_ERROR_EXIT
            print(f"emoe-run: error: {error}", file=sys.stderr)
            return True
        if isinstance(error, RunFailure):
            record.status, record.error, self.exit_code = "failed", str(error), 1
            print(f"emoe-run: run failed: {error}", file=sys.stderr)
            return True
        if isinstance(error, RunInterrupted):
            record.status, record.error = "interrupted", str(error)
            self.exit_code = 128 + getattr(signal, error.signal_name)
            print(f"emoe-run: {error}", file=sys.stderr)
            return True
        if isinstance(error, (KeyboardInterrupt, SystemExit)):  # a second Ctrl-C, or a
            record.status, record.error = "interrupted", type(error).__name__  # launcher's exit
            self.exit_code = 130
            return False
        if not isinstance(error, Exception):
            return False
        record.status, self.exit_code = "failed", 1
        record.error = f"{type(error).__name__}: {error}"
        record.extra["traceback"] = "".join(traceback.format_exception(kind, error, trace))
        if not self.multirun:
            return False
        print(record.extra["traceback"], f"emoe-run: run failed, the sweep goes on: {error}",
              file=sys.stderr)  # one failing job never stops the others
        return True
