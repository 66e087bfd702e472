"""Output folder names carry the run's method, resolved from the composed config alone."""

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import emoe_cli.config.naming  # noqa: F401 (registers ${emoe_method:}, as emoe-run does)

ROOT = Path(__file__).resolve().parents[2]

if not OmegaConf.has_resolver("emoe_uid"):  # emoe-run's, registered without importing it
    OmegaConf.register_new_resolver("emoe_uid", lambda: secrets.token_hex(2), use_cache=True)


def hydra_dirs(*overrides):
    with initialize_config_module("emoe_cli.conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    cfg.hydra.job.num = 3  # set per job by the launcher
    return cfg.hydra.run.dir, cfg.hydra.sweep.subdir


@pytest.mark.parametrize("method", ["dense", "emoe", "gmoe", "lora_emoe"])
def test_run_folder_ends_with_the_method(method):
    run_dir, subdir = hydra_dirs(f"method={method}", "task=rte", "model=bert-base-cased")
    assert run_dir.endswith(f"_rte_bert-base-cased_{method}"), run_dir
    assert subdir == f"3_{method}"


def test_folder_names_follow_the_keys_not_just_the_preset():
    assert hydra_dirs("moe=dense")[0].endswith("_minilm_dense")
    assert hydra_dirs("moe.split=random")[0].endswith("_minilm_emoe_random")
    # a config too broken to name a method still names a folder; the checks report it
    assert hydra_dirs("~gate.method")[0].endswith("_minilm_unnamed")


def test_naming_loads_no_model_library():
    code = ("import sys, emoe_cli.config.naming; "
            "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
