"""Stochastic depth for transformers' ViT (`model.drop_path_rate`, emoe_cli/models/drop_path.py)."""

import pytest
import torch
from torch import nn

from emoe_cli.errors import UserError
from emoe_cli.models.drop_path import DropPath, add_drop_path
from tests.conftest import tiny_gpt2, tiny_vit


def test_a_dropped_sample_loses_its_whole_branch_and_the_kept_ones_are_scaled():
    torch.manual_seed(0)
    layer = DropPath(nn.Dropout(0.0), 0.25).train()
    out = layer(torch.ones(4000, 5, 3))
    per_sample = out.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1))
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)  # the expectation is kept
    assert torch.equal(layer.eval()(torch.ones(2, 3)), torch.ones(2, 3))


def test_vit_blocks_get_rates_rising_linearly_to_the_given_one():
    model = tiny_vit()
    torch.manual_seed(1)
    pixels = torch.randn(3, 1, 16, 16)
    reference = model(pixels).logits
    assert add_drop_path(model, 0.1) == pytest.approx([0.0, 0.1])  # 2 blocks
    blocks = model.base_model.layers if hasattr(model.base_model, "layers") else (
        model.base_model.encoder.layer)
    assert [block.dropout.rate for block in blocks] == pytest.approx([0.0, 0.1])
    evaluated = model(pixels).logits
    assert torch.allclose(evaluated, reference)  # evaluation: the model as it was
    model.train()
    for block in blocks:
        block.dropout.rate = 0.9
    torch.manual_seed(2)
    trained = [model(pixels).logits for _ in range(4)]
    assert any(not torch.allclose(trained[0], other) for other in trained[1:])
    model.eval()
    assert torch.allclose(model(pixels).logits, evaluated)  # off in evaluation


def test_bad_rates_and_models_without_block_dropout_are_user_errors():
    with pytest.raises(UserError, match=r"model.drop_path_rate=1.5 is invalid; valid: a number"):
        add_drop_path(tiny_vit(), 1.5)
    with pytest.raises(UserError, match="no residual-branch dropout"):
        add_drop_path(tiny_gpt2(), 0.1)
    assert add_drop_path(tiny_gpt2(), 0.0) == []
