"""Errors caused by the user's input: reported as one line, never as a traceback."""

import logging


class UserError(Exception):
    """Bad config values, unknown names, missing files: the message says what would be valid."""


class DataError(UserError):
    """A data file is missing or malformed; the message names the file."""


class MissingData(DataError):
    """A data set with no download is absent locally: an OOD set may be skipped for this."""


class CheckpointError(UserError):
    """A checkpoint that cannot be resumed (incomplete, damaged, planted, other data)."""


class RunFailure(Exception):
    """The run itself went wrong in a way we can explain in one line (e.g. a NaN loss)."""


class TrainingDiverged(RunFailure):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM or Ctrl-C stopped the run after it saved a checkpoint to resume from."""

    def __init__(self, signal_name: str, where: str) -> None:
        super().__init__(f"{signal_name}: stopped {where}; rerun the same command to resume")
        self.signal_name = signal_name


def warnings_to_stderr(prog: str) -> None:
    """Show the `emoe` logger's warnings as `prog: warning: ...` lines on stderr, when nothing
    else (Hydra, a test runner, the caller) has set up logging: console commands use it."""
    logger = logging.getLogger("emoe")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()  # stderr, looked up when a line is written
    handler.setFormatter(logging.Formatter(f"{prog}: warning: %(message)s"))
    logger.addHandler(handler)
