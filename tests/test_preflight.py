"""The command line is answered or refused before torch loads and before any run folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emoe_cli.config.checks import config_groups, validate
from emoe_cli.config.preflight import command_line_problem
from tests.helpers import assert_one_line_error

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft")
# Runs a console entry point, then (at exit, whatever the exit code) lists the heavy modules
# that were imported on stdout's last line.
PROBE = """
import atexit, sys
atexit.register(lambda: print("HEAVY:", *[m for m in {heavy!r} if m in sys.modules]))
from {module} import cli
sys.argv = [{prog!r}, *sys.argv[1:]]
cli()
"""


def probe(*argv: str, module: str = "emoe_cli.cli.train", prog: str = "emoe-run",
          env: dict | None = None) -> subprocess.CompletedProcess:
    code = PROBE.format(heavy=HEAVY, module=module, prog=prog)
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60)


def heavy_modules(result: subprocess.CompletedProcess) -> list[str]:
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY:"), result.stdout[-500:] + result.stderr[-2000:]
    return last.split()[1:]


@pytest.mark.parametrize("argv", [["--help"], ["--cfg", "job"], ["--info"],
                                  ["-sc", "query=bash"]])
def test_help_cfg_info_and_completion_load_no_torch(argv):
    result = probe(*argv, env={"COMP_LINE": "emoe-run trainer.l"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert heavy_modules(result) == []
    if argv[0] == "-sc":
        assert "trainer.lr=" in result.stdout.split()


@pytest.mark.parametrize("argv, message", [
    (["moe.top_k=0"], "moe.top_k=0 is invalid; valid: an integer >= 1"),
    (["method=emo"], "method=emo is unknown; valid: dense, emoe"),
    (["trainer.lrr=1"], "trainer.lrr is not a config key; closest: trainer.lr"),
    (["+trainer.lrr=1"], "trainer.lrr is not a config key; + adds only keys a preset defines"),
])
def test_config_errors_are_one_line_without_torch(argv, message):
    result = probe(*argv)
    assert_one_line_error(result.returncode, result.stderr, message)
    assert heavy_modules(result) == []


def test_emoe_inspect_answers_without_torch_too():
    result = probe("inspect.batch_size=0", module="emoe_cli.cli.inspection", prog="emoe-inspect")
    assert_one_line_error(result.returncode, result.stderr,
                          "inspect.batch_size=0 is invalid", program="emoe-inspect")
    assert heavy_modules(result) == []
    assert heavy_modules(probe("--help", module="emoe_cli.cli.inspection")) == []


@pytest.mark.parametrize("argv, folder", [
    (["moe.top_k=99"], "hydra.run.dir"),
    (["--multirun", "moe.top_k=4,99"], "hydra.sweep.dir"),
])
def test_a_value_error_makes_no_run_folder(tmp_path, argv, folder):
    result = probe(*argv, f"{folder}={tmp_path / 'out'}")
    assert_one_line_error(result.returncode, result.stderr,
                          "moe.top_k=99 is invalid; valid: 1..moe.num_experts (64)")
    assert not (tmp_path / "out").exists()


def problem(*argv: str) -> str | None:
    return command_line_problem(list(argv), "config", validate)


@pytest.mark.parametrize("argv, message", [
    (["modle=minilm"], "modle is not a config group or key; closest: model"),
    # groups come from conf/'s folders, so the newest ones are suggested too
    (["metod=emoe"], "metod is not a config group or key; closest: method, model"),
    (["ingrediant=official"], "closest: ingredient"),
    (["ingredient=x"], "ingredient=x is unknown; valid: clean, dense"),
    (["profile=x"], "profile=x is unknown; valid: clean, official"),
    (["trainerr.lr=1"], "trainerr.lr: trainerr is not a config group or key; closest: trainer"),
    (["moe.topk=3"], "moe.topk is not a config key; closest: moe.top_k"),
    (["gate.init=keys"], "gate.init is not a key of this config; it comes with gate=learned"),
    (["+trainer.lr=1"], "+trainer.lr: trainer.lr is already in the config; valid: trainer.lr="),
    (["+bogus=1"], "bogus is not a config key; + adds only keys a preset defines, or "
                   "free-form ones under +extra.<name>"),
    (["moe.layers=[1,"], "moe.layers=[1, does not parse"),
    (["trainer.precision=fp8"], "trainer.precision='fp8' is invalid; valid: fp32, bf16, fp16"),
    (["--multirun", "seed=0,1", "moe.top_k=8,99"], "moe.top_k=99 is invalid"),
    (["--cfg", "job", "trainer.lrr=1"], "trainer.lrr is not a config key"),
    (["hydra/launcher=nope"], "hydra/launcher=nope is unknown; valid: basic, joblib"),
    (["hydra.run.dirr=x"], "hydra.run.dirr is not a Hydra setting"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--multirun", "--cfg", "job"], "--run, --multirun, --cfg and --info exclude each other"),
])
def test_mistakes_are_named_with_what_is_valid(argv, message):
    found = problem(*argv)
    assert found is not None and message in found and "\n" not in found, found


@pytest.mark.parametrize("argv", [
    ["experiment=quickstart", "debug=fast", "seed=1"],
    ["+extra.note=retry", "+extra.owner.team=nlp"],  # the free-form namespace
    ["+task.files.my_reviews=/data/x.tsv", "task.ood=[my_reviews]"],  # a mapping's new entry
    ["+model.drop_path_rate=0.1"],  # a key the ViT presets define
    ["gate=learned", "gate.init=random"],
    ["--multirun", "method=dense,emoe", "seed=0,1"],
    ["--multirun", "hydra/launcher=local_parallel", "experiment=glue_bert_base"],
    ["--cfg", "job", "moe.top_k=0"],  # shows the config; values are checked when it runs
    ["--help", "moe.top_k=0"],
])
def test_good_command_lines_pass(argv):
    assert problem(*argv) is None


def test_every_conf_folder_is_a_checked_group():
    groups = config_groups()
    assert {"method", "ingredient", "model", "experiment", "hydra/launcher"} <= set(groups)
    assert not any(group.startswith("_") for group in groups)


def test_removing_a_typed_key_is_one_line_and_a_gate_key_can_still_be_removed():
    """Structured configs (emoe_cli/config/schema.py) cannot lose a key: say so in one line."""
    found = problem("~trainer.lr")
    assert found == ("~trainer.lr: trainer.lr is a typed setting, which cannot be removed; "
                     "valid: trainer.lr=<value>")
    assert problem("~gate.method") is None


def test_a_type_hydra_refuses_while_composing_is_the_schema_line():
    assert problem("trainer.epochs=abc") == (
        "trainer.epochs='abc' is invalid; valid: an integer >= 1")
    assert problem("lora=standard", "lora.r=x") == (
        "lora.r='x' is invalid; valid: a positive integer")
