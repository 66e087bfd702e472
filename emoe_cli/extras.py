"""Optional libraries a command needs: a missing one is one line naming the extra to install,
because the base install (what `emoe-run` needs) leaves the report libraries out."""

from __future__ import annotations

import importlib
import sys

REPORT = ("matplotlib", "pandas", "tabulate", "jinja2")  # pyproject's `report` extra
USER_ERROR_EXIT = 2


def missing(modules: tuple[str, ...]) -> list[str]:
    """The modules that cannot be imported (absent or broken)."""
    absent = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    return absent


def require(prog: str, modules: tuple[str, ...] = REPORT, extra: str = "report") -> None:
    """Exit with `<prog>: error: needs a/b; pip install 'emoe-cli[extra]'` (code 2) when any
    of `modules` is missing."""
    absent = missing(modules)
    if absent:
        print(f"{prog}: error: needs {'/'.join(absent)}; pip install 'emoe-cli[{extra}]'",
              file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
