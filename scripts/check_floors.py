#!/usr/bin/env python3
"""Install emoe with every dependency at its pyproject floor in a fresh venv, then run a real
tiny sweep on the base install (no report extra: emoe-report must then refuse in one line),
emoe-report on it with the extra, and the tests that touch version-sensitive calls, so a floor
in pyproject.toml is one the code has been seen to work with (README "Dependencies").

Run it with Python >= 3.11 (it reads pyproject.toml with tomllib); the venv it builds uses
--python (default: python3.10, the requires-python floor, when it is on PATH or in pyenv).
Needs the package index and about 6 GB of disk (a floor torch from PyPI brings its CUDA
libraries). Exit 0 when everything passed.

    python3 scripts/check_floors.py                   # floors of the base + minilm,report,test
    python3 scripts/check_floors.py --set scipy==1.14  # try one version below a floor
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = "minilm,report,test"  # everything the smoke run, the report and the tests import
REPORT_ONLY = ("matplotlib", "tabulate")  # the report extra's libraries no base dependency pulls
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")
# What the venv's pytest runs: one file per version-sensitive call (see --help).
TESTS = [
    "tests/report/test_report.py",            # scipy.stats.bootstrap(rng=), pandas, matplotlib,
                                              #   tabulate (to_markdown), jinja2 (to_latex)
    "tests/evaluation/test_metrics.py",       # scikit-learn and scipy metrics
    "tests/moe/test_serialize.py",            # safetensors save/load of EMoE routers
    "tests/training/test_lora.py",            # peft LoRA
    "tests/training/test_fingerprint.py",     # pyarrow / datasets fingerprints
    "tests/training/test_checkpoint_safety.py",  # accelerate save_state / load_state
    "tests/data/test_files.py",               # datasets loading from local files
    "tests/data/test_digits.py",              # h5py (USPS), pillow, sklearn digits
    "tests/test_models.py",                   # transformers model building
    "tests/test_configs.py",                  # hydra composition of every preset (its wheel
                                              #   test is left out: the install built the wheel)
    "tests/test_tracking.py",                 # the logger group
]


def floors(extras: list[str]) -> dict[str, str]:
    """`name -> floor` for every `>=` requirement of the base dependencies and `extras`."""
    import tomllib  # Python >= 3.11, the interpreter running this script (not the venv's)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        sys.exit(f"check_floors: error: unknown extras {unknown}; valid: {sorted(optional)}")
    found = {}
    for line in [*project["dependencies"], *(r for e in extras for r in optional[e])]:
        name, _, spec = REQUIREMENT.match(line).groups()
        for clause in spec.split(","):
            clause = clause.strip()
            if clause.startswith(">="):
                found[name.lower()] = clause[2:].strip()
    return found


def default_python() -> str:
    """python3.10 (the requires-python floor) where this machine has it, else python3."""
    pyenv = Path.home() / ".pyenv" / "versions"
    for candidate in [shutil.which("python3.10"), *sorted(pyenv.glob("3.10*/bin/python3.10"))]:
        works = candidate and subprocess.run([candidate, "-V"], capture_output=True).returncode == 0
        if works:
            return str(candidate)
    return "python3"


def step(title: str, command: list[str], **kwargs) -> None:
    """Run one step, echoing it and its time; stop the check on the first failure."""
    print(f"\n== {title}: {' '.join(command)}", flush=True)
    start = time.monotonic()
    done = subprocess.run(command, **kwargs)
    print(f"== {title}: exit {done.returncode} in {time.monotonic() - start:.0f}s", flush=True)
    if done.returncode != 0:
        sys.exit(f"check_floors: FAILED at {title}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=None, help="interpreter for the venv")
    parser.add_argument("--venv", default=os.path.join(tempfile.gettempdir(), "emoe-floors"),
                        help="where to build it (recreated)")
    parser.add_argument("--extras", default=EXTRAS, help=f"extras to install (default {EXTRAS})")
    parser.add_argument("--set", action="append", default=[], metavar="PKG==VERSION",
                        help="replace one floor (to bisect); repeatable")
    parser.add_argument("--data-root", default=os.environ.get(
        "EMOE_DATA_ROOT", str(ROOT.parent / "shared" / "data")), help="the local data sets")
    parser.add_argument("--skip-install", action="store_true", help="reuse the venv as it is")
    args = parser.parse_args()

    pins = floors([e for e in args.extras.split(",") if e])
    for item in args.set:
        name, _, version = item.partition("==")
        pins[name.strip().lower()] = version.strip()
    venv = Path(args.venv)
    bin_dir = venv / "bin"
    work = venv / "work"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "EMOE_SHARED_DATA": args.data_root, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    total = time.monotonic()

    if not args.skip_install:
        shutil.rmtree(venv, ignore_errors=True)
        python = args.python or default_python()
        step("venv", [python, "-m", "venv", str(venv)])
        venv.joinpath("constraints.txt").write_text(
            "".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        print("floors:", ", ".join(f"{n}=={v}" for n, v in sorted(pins.items())))
        step("uv", [str(bin_dir / "python"), "-m", "pip", "install", "-q", "uv"], env=env)
        # A non-editable install: the smoke run uses the wheel (conf/ packaged) as a user would.
        step("install", [str(bin_dir / "uv"), "pip", "install", "--python",
                         str(bin_dir / "python"), "--constraint", str(venv / "constraints.txt"),
                         f"{ROOT}[{args.extras}]"], env=env)
    step("versions", [str(bin_dir / "python"), "-c", "import importlib.metadata as m, sys; "
                      "print(sys.version.split()[0], *sorted(f'{d.metadata[\"Name\"]}=={d.version}'"
                      " for d in m.distributions()))"], env=env)

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    uv = [str(bin_dir / "uv"), "pip", "--quiet"]
    # The runs use the base install: the report extra's own libraries are taken out first.
    step("base install", [*uv, "uninstall", "--python", str(bin_dir / "python"),
                          *REPORT_ONLY], env=env)
    # Two methods x two seeds: emoe-report then has seed pairs to compare.
    step("smoke run", [str(bin_dir / "emoe-run"), "-m", "experiment=quickstart", "debug=fast",
                       "method=dense,emoe", "seed=0,1", f"data.root={args.data_root}",
                       f"hydra.sweep.dir={work}/runs", f"trainer.checkpoint_dir={work}/ckpt",
                       f"sweep.index_dir={work}/index"], cwd=work, env=env)
    report = [str(bin_dir / "emoe-report"), str(work / "runs"), "--out", str(work / "report"),
              "--resamples", "2000"]
    print(f"\n== report without the extra: {' '.join(report)}", flush=True)
    done = subprocess.run(report, cwd=work, env=env, capture_output=True, text=True)
    expected = f"emoe-report: error: needs {'/'.join(REPORT_ONLY)}; pip install 'emoe-cli[report]'"
    if (done.returncode, done.stderr.strip()) != (2, expected):
        sys.exit(f"check_floors: FAILED at report without the extra: exit {done.returncode}, "
                 f"stderr {done.stderr.strip()!r}, not 2 and {expected!r}")
    print(f"== report without the extra: exit 2, {expected}", flush=True)
    step("report extra", [*uv, "install", "--python", str(bin_dir / "python"), "--constraint",
                          str(venv / "constraints.txt"), *REPORT_ONLY], env=env)
    step("report", report, cwd=work, env=env)
    paired = (work / "report" / "paired.csv").read_text().strip().splitlines()
    if len(paired) < 2:
        sys.exit("check_floors: FAILED at report: paired.csv has no method-vs-dense row")
    # The tests run against the installed package: a copy of tests/ outside the checkout.
    shutil.copytree(ROOT / "tests", work / "tests")
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")  # pytest's ini options
    step("tests", [str(bin_dir / "python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                   "-k", "not built_wheel", *TESTS], cwd=work, env=env)
    print(f"\ncheck_floors: all passed in {time.monotonic() - total:.0f}s with "
          + ", ".join(f"{n}=={v}" for n, v in sorted(pins.items())))


if __name__ == "__main__":
    main()
