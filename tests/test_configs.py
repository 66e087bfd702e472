import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from emoe_cli.config.checks import available_choices, check_group_choices
from tests.helpers import assert_one_line_error, compose_config

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = ["model.name_or_path", "task.name", "moe.num_experts", "moe.top_k",
                 "moe.layers", "gate.name", "trainer.lr", "trainer.epochs", "trainer.max_steps",
                 "trainer.batch_size", "seed", "data.root", "data.max_train_samples",
                 "data.max_eval_samples"]


def test_default_config_has_every_contract_key():
    cfg = compose_config()
    for key in CONTRACT_KEYS:
        OmegaConf.select(cfg, key, throw_on_missing=True)
    assert (cfg.model.name, cfg.task.name, cfg.gate.name) == ("minilm", "sst2", "avg_k")
    assert list(cfg.moe.layers) == [2, 4]  # from the model preset


@pytest.mark.parametrize("group", ["model", "task", "moe", "gate", "trainer", "logger"])
def test_every_preset_composes(group):
    for choice in available_choices(group):
        cfg = compose_config([f"{group}={choice}"])
        assert OmegaConf.to_container(cfg, resolve=True)


def test_model_presets_carry_their_paper_layers():
    assert list(compose_config(["model=bert-base-cased"]).moe.layers) == [10]  # README.md:37
    assert list(compose_config(["model=bert-base-uncased"]).moe.layers) == [8, 10]
    assert list(compose_config(["model=gpt2-xl"]).moe.layers) == [44]
    assert compose_config(["moe.layers=last_half"]).moe.layers == "last_half"


def test_experiment_then_debug_override_the_defaults():
    quick = compose_config(["experiment=quickstart"])
    assert quick.data.max_train_samples == 4000 and quick.trainer.epochs == 2
    fast = compose_config(["experiment=quickstart", "debug=fast"])
    assert fast.data.max_train_samples == 64 and not fast.logger  # logger=none
    assert compose_config(["experiment=quickstart", "trainer.epochs=5"]).trainer.epochs == 5


def test_unknown_presets_are_reported_in_one_line():
    message = check_group_choices(["model=nope"])
    assert message.startswith("model=nope is unknown; valid: bert-base-cased")
    assert "minilm" in message and "\n" not in message
    assert check_group_choices(["--multirun", "model=minilm,gpt3"]).startswith("model=gpt3")
    assert check_group_choices(["gate=avg_k", "moe.top_k=4", "model.name_or_path=/x"]) is None


def test_cli_rejects_unknown_preset_with_one_line():
    result = subprocess.run([sys.executable, "-m", "emoe_cli.cli.train", "task=nope"],
                            capture_output=True, text=True, cwd=ROOT)
    assert_one_line_error(result.returncode, result.stderr,
                          f"task=nope is unknown; valid: {', '.join(available_choices('task'))}")


def test_built_wheel_ships_and_finds_the_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("emoe_cli-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "emoe_cli/conf/config.yaml" in names and "emoe_cli/conf/model/minilm.yaml" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    probe = ("import emoe_cli, sys; assert emoe_cli.__file__.startswith(sys.argv[1]);"
             "from tests_probe import compose_config; print(compose_config().task.name)")
    (tmp_path / "tests_probe.py").write_text((ROOT / "tests" / "helpers.py").read_text())
    result = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True,
                            text=True, cwd=tmp_path,
                            env={"PYTHONPATH": f"{target}:{tmp_path}", "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sst2"
