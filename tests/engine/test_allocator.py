"""`emoe-run` makes glibc keep freed memory, so a loop's large blocks stop page-faulting."""

import subprocess
import sys

import pytest

from emoe_cli.engine import allocator
from emoe_cli.errors import UserError

# Allocates and frees a 64 MB array five times; prints the page faults of the last four.
FAULTS = """
import resource, numpy as np
from emoe_cli.engine.allocator import keep_freed_memory
print(keep_freed_memory())
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(8 << 20)
before = faults()
for _ in range(4):
    np.ones(8 << 20)
print(faults() - before)
"""


def _faults(choice: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS], env={"EMOE_MALLOC": choice},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(allocator._glibc_mallopt() is None, reason="needs glibc")
def test_kept_memory_is_reused_without_page_faults():
    (applied, kept), (_, system) = _faults("reuse"), _faults("system")
    assert applied == "True"
    assert system >= 4 * 32  # 4 x 64 MB faulted in again: at least once per 2 MB huge page
    assert kept < system / 20


def test_a_bad_choice_is_named_with_the_valid_ones(monkeypatch):
    monkeypatch.setenv("EMOE_MALLOC", "jemalloc")
    with pytest.raises(UserError, match="EMOE_MALLOC='jemalloc' is invalid; valid: reuse, system"):
        allocator.keep_freed_memory()


def test_system_leaves_the_allocator_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_glibc_mallopt",
                        lambda: lambda *option: calls.append(option) or 1)  # 1: accepted
    monkeypatch.setenv("EMOE_MALLOC", "system")
    assert not allocator.keep_freed_memory() and calls == []
    monkeypatch.delenv("EMOE_MALLOC")  # the default: reuse
    allocator.keep_freed_memory()
    assert calls == [(allocator.M_MMAP_MAX, 0), (allocator.M_TRIM_THRESHOLD,
                                                 allocator.NEVER_TRIM)]
