"""Wall time of `emoe-run`'s instant answers against `python -c "import torch"`.

`--help`, `--cfg job`, `--info`, a completion query and config errors must come back sooner
than torch alone loads (target: each below 1.0x the torch import), since none of them needs
a model. Each command is a fresh interpreter (`python -m emoe_cli.cli.train`, what the
`emoe-run` script runs), timed in interleaved rounds so that a busy machine slows all alike;
each is checked once to answer as it should (exit code, and no torch for the CLI).

    python scripts/bench/bench_cli.py [--rounds 5] [--unchecked]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from common import interleaved_medians

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
       "COMP_LINE": "emoe-run trainer.l"}  # what bash hands Hydra's completion on a Tab
CLI = [sys.executable, "-m", "emoe_cli.cli.train"]
# name: (command, expected exit code)
COMMANDS = {
    'python -c "import torch"': ([sys.executable, "-c", "import torch"], 0),
    "emoe-run --help": ([*CLI, "--help"], 0),
    "emoe-run --cfg job": ([*CLI, "--cfg", "job"], 0),
    "emoe-run --info": ([*CLI, "--info"], 0),
    "emoe-run -sc query=bash (Tab after trainer.l)": ([*CLI, "-sc", "query=bash"], 0),
    "emoe-run moe.top_k=0 (bad value)": ([*CLI, "moe.top_k=0"], 2),
    "emoe-run method=emo (bad group choice)": ([*CLI, "method=emo"], 2),
    "emoe-run trainer.lrr=1 (key typo)": ([*CLI, "trainer.lrr=1"], 2),
}
PROBE = "import runpy, sys; sys.argv[0] = 'emoe-run'; atexit = __import__('atexit'); " \
        "atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); " \
        "runpy.run_module('emoe_cli.cli.train', run_name='__main__')"


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)


def check(name: str, command: list[str], expected: int) -> None:
    """The command answers with its expected exit code; the CLI's loads no torch."""
    result = run(command)
    if result.returncode != expected:
        sys.exit(f"{name}: exit {result.returncode}, expected {expected}:\n{result.stderr}")
    if command[:3] == CLI:
        probed = run([sys.executable, "-c", PROBE, *command[3:]])
        if probed.stderr.strip().splitlines()[-1] != "False":
            sys.exit(f"{name}: imported torch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--unchecked", action="store_true",
                        help="time only, e.g. a copy of an older checkout that answers otherwise")
    args = parser.parse_args()
    for name, (command, expected) in COMMANDS.items():
        if not args.unchecked:
            check(name, command, expected)
    medians = interleaved_medians(
        {name: (lambda c=command: run(c)) for name, (command, _) in COMMANDS.items()},
        rounds=args.rounds)
    baseline = medians['python -c "import torch"']
    print(f"median wall time of {args.rounds} interleaved rounds, {os.cpu_count()} CPUs")
    for name, seconds in medians.items():
        print(f"{name:<48} {seconds:6.2f} s  {seconds / baseline:5.2f}x torch import")


if __name__ == "__main__":
    main()
