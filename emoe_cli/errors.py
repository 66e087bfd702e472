"""Errors caused by the user's input: reported as one line, never as a traceback."""


class UserError(Exception):
    """Bad config values, unknown names, missing files: the message says what would be valid."""


class DataError(UserError):
    """A data file is missing or malformed; the message names the file."""
