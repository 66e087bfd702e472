import pytest

from emoe_cli.models.costs import ffn_parameters, seconds_per_step
from emoe_cli.moe import emoefy
from tests.conftest import tiny_bert, tiny_llama

# tiny_bert: d = 32, d_ff = 64, 3 blocks; one FFN = W1 2048 + b1 64 + W2 2048 + b2 32
BERT_FFN = 2048 + 64 + 2048 + 32


def test_dense_model_uses_every_ffn_parameter():
    assert ffn_parameters(tiny_bert()) == {"total": 3 * BERT_FFN, "active_per_token": 3 * BERT_FFN}


def test_avg_k_layer_activates_k_of_n_experts_and_adds_no_parameters():
    model = emoefy(tiny_bert(), num_experts=4, top_k=1, layers=[1], gate="avg_k")
    counts = ffn_parameters(model)
    assert counts["total"] == 3 * BERT_FFN
    assert counts["active_per_token"] == 2 * BERT_FFN + (2048 + 64 + 2048) / 4 + 32


def test_learned_router_parameters_count_as_active():
    model = emoefy(tiny_bert(), num_experts=4, top_k=2, layers=[0], gate="learned")
    router = sum(p.numel() for p in model.bert.encoder.layer[0].intermediate.router.parameters())
    counts = ffn_parameters(model)
    assert router > 0 and counts["total"] == 3 * BERT_FFN + router
    assert counts["active_per_token"] == 2 * BERT_FFN + (2048 + 64 + 2048) / 2 + 32 + router


def test_gated_ffn_counts_the_up_projection():
    counts = ffn_parameters(tiny_llama())  # gate 64x32, up 64x32, down 32x64, no biases
    assert counts == {"total": 2 * 3 * 2048, "active_per_token": 2 * 3 * 2048}


def test_unsupported_model_is_not_counted_rather_than_failing():
    import torch

    assert ffn_parameters(torch.nn.Linear(2, 2)) is None


@pytest.mark.parametrize("seconds, epochs, expected", [
    (10.0, [{"step": 4}, {"step": 8}], 1.25), (3.0, [], None), (3.0, [{"step": 0}], None)])
def test_seconds_per_step(seconds, epochs, expected):
    assert seconds_per_step(seconds, epochs) == expected
