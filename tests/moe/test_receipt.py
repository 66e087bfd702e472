import copy

import pytest
import torch

from emoe_cli.moe import emoe_modules, emoefy
from emoe_cli.moe.receipt import all_experts, conversion_receipt, expert_mode, model_outputs
from tests.conftest import tiny_bert, tiny_llama

SENTENCE = {"input_ids": torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102],
                                       [101, 2023, 2003, 1037, 2204, 3185, 102]])}


def _ids(model):
    ids = torch.randint(1, model.config.vocab_size, (2, 12),
                        generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("build, gate", [(tiny_bert, "avg_k"), (tiny_bert, "learned"),
                                         (tiny_llama, "cosine")])
def test_all_experts_is_the_dense_model_and_is_undone_on_exit(build, gate):
    dense = build()
    batch = _ids(dense)
    expected = model_outputs(dense, batch)
    moe = emoefy(copy.deepcopy(dense), num_experts=8, top_k=2, layers="all", gate=gate)
    sparse = model_outputs(moe, batch)
    assert (sparse - expected).abs().max() > 1e-5
    with all_experts(moe):
        torch.testing.assert_close(model_outputs(moe, batch), expected, atol=1e-5, rtol=0)
    assert not any(m.use_all_experts for m in emoe_modules(moe))
    torch.testing.assert_close(model_outputs(moe, batch), sparse)


def test_expert_mode_nests_and_rejects_unknown_modes():
    moe = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[1])
    layer = next(emoe_modules(moe))
    with expert_mode(moe, "dense"):
        assert layer.use_all_experts
        with expert_mode(moe, "emoe"):
            assert not layer.use_all_experts
        assert layer.use_all_experts
    assert not layer.use_all_experts
    with pytest.raises(ValueError, match="valid: emoe, dense"):
        expert_mode(moe, "sparse")


def test_receipt_of_a_correct_conversion_is_round_off(minilm_slice):
    dense_outputs = model_outputs(minilm_slice, SENTENCE)
    emoefy(minilm_slice, num_experts=64, top_k=16, layers=[0, 1])
    receipt = conversion_receipt(minilm_slice, SENTENCE, dense_outputs, tolerance=1e-4)
    assert receipt.batch_size == 2 and 0.0 <= receipt.max_abs_diff < 1e-5
    assert receipt.to_dict() == {"max_abs_diff": receipt.max_abs_diff, "tolerance": 1e-4,
                                 "batch_size": 2}


def test_receipt_refuses_a_broken_conversion(minilm_slice):
    dense_outputs = model_outputs(minilm_slice, SENTENCE)
    emoefy(minilm_slice, num_experts=64, top_k=16, layers=[1])
    layer = next(emoe_modules(minilm_slice))
    with torch.no_grad():  # a conversion that lost the neuron permutation of W2
        layer.w2.weight.copy_(layer.w2.weight.roll(1, dims=1))
    with pytest.raises(ValueError, match="above moe.receipt_tolerance=0.001"):
        conversion_receipt(minilm_slice, SENTENCE, dense_outputs, tolerance=1e-3)

