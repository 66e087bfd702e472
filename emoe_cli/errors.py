"""Errors caused by the user's input: reported as one line, never as a traceback."""


class UserError(Exception):
    """Bad config values, unknown names, missing files: the message says what would be valid."""


class DataError(UserError):
    """A data file is missing or malformed; the message names the file."""


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
