"""Break one feature at a time and check that the tests meant to cover it fail.

Each mutant is a single textual edit of one core module. The project is copied to a
temporary folder once; each mutant is applied to that copy, its tests run there (as a
subprocess, with the copy first on PYTHONPATH), and the file is restored before the next
mutant, so the checkout itself is never edited. A mutant *survives* when its tests all pass:
that feature can break without the suite noticing.

    python scripts/mutants.py                 # every mutant
    python scripts/mutants.py --only sampler-set-epoch,loop-no-resume
    python scripts/mutants.py --list

Exit status: 0 when every mutant was killed, 1 when any survived or no longer applies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Mutant:
    name: str
    path: str  # relative to the project root
    old: str  # must occur exactly once in the file
    new: str
    tests: list[str]  # pytest node ids or files
    env: dict[str, str] = field(default_factory=dict)
    why: str = ""


ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the sparse path's thread tests must not need cores

MUTANTS = [
    Mutant("loop-no-resume", "emoe_cli/training/loop.py",
           "(resumed := checkpoints.load(accelerator, state))", "(resumed := None)",
           ["tests/training/test_fit.py"], why="fit never loads the checkpoint"),
    Mutant("sampler-set-epoch", "emoe_cli/training/sampler.py",
           "    def set_epoch(self, epoch: int) -> None:\n        self.epoch = epoch\n\n"
           "    def __iter__(self) -> Iterator[int]:",
           "    def set_epoch(self, epoch: int) -> None:\n        pass\n\n"
           "    def __iter__(self) -> Iterator[int]:",
           ["tests/training/test_sampler.py"], why="set_epoch does nothing"),
    Mutant("loop-no-balance-loss", "emoe_cli/training/loop.py",
           "loss = loss + hooks.extra_loss()", "pass",
           ["tests/training/test_fit.py"], why="the load-balancing loss is never added"),
    Mutant("report-unpaired-bootstrap", "emoe_cli/report/tables.py",
           "low, high = bootstrap_ci(diffs, resamples)",
           "sides = [joined[c].to_numpy(dtype=float) for c in (metric, f'{metric}{suffix}')]; "
           "rng = np.random.default_rng(0); "
           "low, high = np.percentile([rng.choice(sides[0], len(diffs)).mean()"
           " - rng.choice(sides[1], len(diffs)).mean() for _ in range(resamples)], [2.5, 97.5])",
           ["tests/report/test_report.py"], why="each side resampled on its own, not in pairs"),
    Mutant("report-pairs-misaligned", "emoe_cli/report/tables.py",
           'diffs = (joined[metric] - joined[f"{metric}{suffix}"]).to_numpy(dtype=float)',
           'diffs = (joined[metric].to_numpy(dtype=float)'
           ' - np.roll(joined[f"{metric}{suffix}"].to_numpy(dtype=float), 1))',
           ["tests/report/test_report.py"], why="seeds paired with the wrong dense seed"),
    Mutant("selection-always-dev", "emoe_cli/experiment/recipe.py",
           "self.select_loader = self.id_loader if data.selection is None else",
           "self.select_loader = self.id_loader if True else",
           ["tests/sweep/test_sweeps.py::"
            "test_heldout_selection_reports_dev_scores_of_the_epoch_chosen_on_train"],
           why="data.selection=heldout still selects on dev"),
    Mutant("threads-drop-partial-sums", "emoe_cli/engine/dispatch.py",
           "        for other in sums[1:]:\n            total.add_(other)\n",
           "        pass\n",
           ["tests/engine/test_expert_threads.py", "tests/engine/test_dispatch.py"], env=ONE_THREAD,
           why="every thread's sums but the first are dropped"),
    Mutant("dispatch-no-gathered-bias", "emoe_cli/engine/dispatch.py",
           "_linear_into(pre_of[i], xe, w1_of[e], b1_of[e])",
           "_linear_into(pre_of[i], xe, w1_of[e], None)",
           ["tests/engine/test_dispatch.py"], why="gathered experts skip b1"),
    Mutant("dispatch-no-gathered-up", "emoe_cli/engine/dispatch.py",
           "                h = h.mul_(up[rows])\n", "                pass\n",
           ["tests/engine/test_dispatch.py"], why="gathered experts skip the gated product"),
    Mutant("dispatch-bf16-stage-lost", "emoe_cli/engine/dispatch.py",
           "rows = _SCRATCH.take(\"stage_total\", self.used, self.total).copy_(rows)",
           "rows = _SCRATCH.take(\"stage_total\", self.used, self.total).zero_()",
           ["tests/engine/test_dispatch.py"], why="half-precision staged sums are lost"),
    Mutant("routing-bottom-k", "emoe_cli/moe/routers.py",
           "picked = logits.topk(top_k, dim=-1)\n", "picked = (-logits).topk(top_k, dim=-1)\n",
           ["tests/moe/test_routers.py"], why="the router picks its worst experts"),
    Mutant("checkpoint-no-old-fallback", "emoe_cli/training/checkpoint.py",
           "for candidate in (self.current, self.previous):",
           "for candidate in (self.current,):",
           ["tests/training/test_fit.py"], why="a crash between the renames loses the run"),
    Mutant("loop-no-early-stop", "emoe_cli/training/loop.py",
           "state.finished = bool(patience) and state.stale >= patience",
           "state.finished = False",
           ["tests/training/test_fit.py"], why="early stopping never stops"),
    Mutant("loop-best-is-last", "emoe_cli/training/loop.py",
           "    if state.best_state is not None:\n"
           "        accelerator.unwrap_model(model).load_state_dict(state.best_state)\n",
           "", ["tests/training/test_fit.py"], why="the last epoch's weights are kept"),
    Mutant("cli-extra-error-lines", "emoe_cli/experiment/task_wrapper.py",
           '            print(f"emoe-run: error: {error}", file=sys.stderr)\n',
           '            print(f"emoe-run: error: {error}\\nsee the log\\nhint", file=sys.stderr)\n',
           ["tests/test_train.py::test_user_errors_exit_with_one_line_and_a_failed_record"],
           why="bad input reported in three lines"),
    Mutant("cli-error-exit-1", "emoe_cli/experiment/task_wrapper.py",
           'str(error), USER_ERROR_EXIT', 'str(error), 1',
           ["tests/test_train.py::test_user_errors_exit_with_one_line_and_a_failed_record"],
           why="bad input exits with 1"),
    Mutant("loop-max-steps-ignored", "emoe_cli/training/loop.py",
           "total_steps = trainer_cfg.max_steps or trainer_cfg.epochs * steps_per_epoch",
           "total_steps = trainer_cfg.epochs * steps_per_epoch",
           ["tests/training/test_fit.py"], why="trainer.max_steps is ignored"),
    Mutant("loop-accumulation-schedule", "emoe_cli/training/loop.py",
           "steps_per_epoch = math.ceil(len(train_loader) / "
           "trainer_cfg.gradient_accumulation_steps)",
           "steps_per_epoch = len(train_loader)",
           ["tests/training/test_fit.py"], why="accumulation miscounts the schedule's steps"),
    Mutant("resume-false-ignored", "emoe_cli/experiment/recipe.py",
           "    if not cfg.trainer.resume:\n", "    if False:\n",
           ["tests/training/test_fit.py"], why="trainer.resume=false still resumes"),
    Mutant("signals-second-ctrl-c", "emoe_cli/training/signals.py",
           "if self.requested and number == signal.SIGINT:", "if False:",
           ["tests/training/test_signals.py"], why="a second Ctrl-C does not interrupt"),
    Mutant("layers-every-other-is-even", "emoe_cli/moe/layers.py",
           'if rule == "even":', 'if rule in ("even", "every_other"):',
           ["tests/moe/test_layer_rules.py"], why="every_other converts the even blocks"),
    Mutant("layers-negative-index", "emoe_cli/moe/layers.py",
           "resolved.add(index % num_layers)", "resolved.add(abs(index))",
           ["tests/moe/test_layer_rules.py"], why="negative indices do not count from the end"),
    Mutant("avgk-momentum-ignored", "emoe_cli/moe/routers.py",
           "self.keys.mul_(self.momentum).add_(keys, alpha=1.0 - self.momentum)",
           "self.keys.copy_(keys)",
           ["tests/moe/test_routers.py"], why="gate.momentum is ignored"),
    Mutant("avgk-normalize-ignored", "emoe_cli/moe/routers.py",
           "            keys = F.normalize(keys, dim=-1)\n", "            pass\n",
           ["tests/moe/test_routers.py"], why="gate.normalize is ignored"),
    Mutant("router-noise-off", "emoe_cli/moe/routers.py",
           "if self.training and self.noise > 0:  # the original's exploration noise",
           "if False:", ["tests/moe/test_routers.py"], why="gate.noise is ignored"),
    Mutant("split-random-ignored", "emoe_cli/experiment/method.py",
           "split=cfg.moe.split,", 'split="cluster",',
           ["tests/moe/test_emoefy.py"], why="moe.split=random still clusters"),
    Mutant("train-as-ignored", "emoe_cli/experiment/recipe.py",
           'with expert_mode(model, cfg.moe.get("train_as", "emoe")):',
           'with expert_mode(model, "emoe"):',
           ["tests/test_instruction_run.py::"
            "test_skipped_rows_random_split_and_dense_training_reach_the_run"],
           why="moe.train_as=dense trains routed"),
    Mutant("skipped-rows-unrecorded", "emoe_cli/experiment/recipe.py",
           '            self.result.skipped_rows = data.skipped_rows\n', "            pass\n",
           ["tests/test_instruction_run.py::"
            "test_skipped_rows_random_split_and_dense_training_reach_the_run"],
           why="skipped rows are not in results.json"),
    Mutant("selection-overlaps-train", "emoe_cli/data/selection.py",
           'return parts["train"], parts["test"]', 'return train, parts["test"]',
           ["tests/data/test_selection.py"], why="the held-out part is also trained on"),
    Mutant("convert-w2-unpermuted", "emoe_cli/moe/layer.py",
           "self.w2 = _linear(ffn.w2[:, order], ffn.b2)", "self.w2 = _linear(ffn.w2, ffn.b2)",
           ["tests/moe/test_emoefy.py"], why="k = N is no longer the dense FFN"),
    Mutant("dispatch-gathered-zeros", "emoe_cli/engine/dispatch.py",
           "            return out.to(x.dtype)\n", "            return out.zero_().to(x.dtype)\n",
           ["tests/engine/test_dispatch.py"], why="the gathered experts add nothing"),
    Mutant("stats-basic-interval", "emoe_cli/report/stats.py",
           'method="percentile"', 'method="basic"',
           ["tests/report/test_report.py"], why="the basic (reflected) interval, not percentile"),
    Mutant("cli-heavy-import", "emoe_cli/cli/train.py",
           "from emoe_cli.config.preflight import exit_on_bad_command_line\n",
           "from emoe_cli.config.preflight import exit_on_bad_command_line\n"
           "from emoe_cli.experiment.recipe import Recipe as _eager  # noqa: F401\n",
           ["tests/test_preflight.py::test_help_cfg_info_and_completion_load_no_torch"],
           why="--help and config errors load torch first"),
    Mutant("moe-package-eager", "emoe_cli/moe/__init__.py",
           "from importlib import import_module\n",
           "from importlib import import_module\n\n"
           "from emoe_cli.moe.convert import emoefy  # noqa: F401\n",
           ["tests/test_preflight.py::test_config_errors_are_one_line_without_torch"],
           why="the config checks load torch through the moe package"),
    Mutant("cli-no-preflight", "emoe_cli/cli/train.py",
           '    exit_on_bad_command_line("emoe-run", sys.argv[1:], "config", validate)\n', "",
           ["tests/test_preflight.py::test_a_value_error_makes_no_run_folder"],
           why="a bad value leaves a run folder"),
    Mutant("preflight-any-plus-key", "emoe_cli/config/preflight.py",
           'if not (override.is_add() or override.is_force_add()) or "/" in key:',
           "if True:", ["tests/test_preflight.py::test_mistakes_are_named_with_what_is_valid"],
           why="+key=value adds any misspelt key silently"),
    Mutant("preflight-no-mapping-entries", "emoe_cli/config/preflight.py",
           'index.get(prefix, {}).get("mapping")', "False",
           ["tests/test_preflight.py::test_good_command_lines_pass"],
           why="+task.files.<name> is refused"),
    Mutant("config-groups-hard-coded", "emoe_cli/config/checks.py",
           'return tuple(sorted(walk(resources.files("emoe_cli.conf"), "")))',
           'return ("profile", "model", "task", "moe", "gate", "lora", "trainer", "logger", '
           '"experiment", "debug")',
           ["tests/test_preflight.py::test_mistakes_are_named_with_what_is_valid"],
           why="a misspelt method or ingredient group gets no closest name"),
]


def copy_project(into: Path) -> Path:
    """The code, configs and tests, without outputs, caches or the virtual environment."""
    skip = shutil.ignore_patterns(".git", ".venv", "outputs", "__pycache__", "*.egg-info",
                                  ".pytest_cache", ".ruff_cache", "multirun")
    target = into / "project"
    shutil.copytree(ROOT, target, symlinks=True, ignore=skip)
    shared = ROOT.parent / "shared"  # where tests/conftest.py looks for the real data
    if shared.is_dir():
        (into / "shared").symlink_to(shared)
    return target


def run_mutant(mutant: Mutant, project: Path, timeout: float) -> tuple[str, float, str]:
    """('killed' | 'survived' | 'not run' | 'stale' | 'timeout', seconds, the first failed test or
    pytest's last line)."""
    path = project / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        return "stale", 0.0, f"{mutant.path}: the text to replace occurs " \
                             f"{original.count(mutant.old)} times"
    path.write_text(original.replace(mutant.old, mutant.new))
    env = {**os.environ, "PYTHONPATH": str(project), "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "disabled", **mutant.env}
    started = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-p",
                                 "no:cacheprovider", *mutant.tests], cwd=project, env=env,
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - started, ""
    finally:
        path.write_text(original)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    last = (failed or lines or [result.stderr.strip()[-200:]])[0 if failed else -1]
    outcome = "survived" if result.returncode == 0 else "killed"
    if result.returncode == 0 and " passed" not in last:  # all skipped: nothing was checked
        outcome = "not run"
    if result.returncode not in (0, 1):  # collection or usage error: not a real kill
        outcome = f"error (pytest exit {result.returncode})"
    return outcome, time.perf_counter() - started, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant")
    args = parser.parse_args(argv)
    chosen = MUTANTS
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - {m.name for m in MUTANTS})
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(unknown)}")
        chosen = [m for m in MUTANTS if m.name in names]
    if args.list:
        for mutant in chosen:
            print(f"{mutant.name:28} {mutant.path}: {mutant.why}")
        return 0
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="emoe-mutants-") as folder:
        project = copy_project(Path(folder))
        for mutant in chosen:
            outcome, seconds, last = run_mutant(mutant, project, args.timeout)
            outcomes.append(outcome)
            print(f"{mutant.name:28} {outcome:9} {seconds:6.1f} s  {last}", flush=True)
    survivors = sum(outcome != "killed" for outcome in outcomes)
    print(f"{len(outcomes) - survivors} of {len(outcomes)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
