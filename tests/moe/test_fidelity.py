import copy

import pytest
import torch
import torch.nn.functional as F
import transformers

from emoe_cli.moe import emoefy
from emoe_cli.moe.fidelity import (
    change_when_routed,
    converted_blocks,
    kept_shares,
    pooled_hidden,
)
from emoe_cli.moe.receipt import conversion_receipt, model_outputs
from tests.conftest import tiny_bert, tiny_llama

SENTENCES = ["the film is a charming and often affecting journey",
             "an utterly dull , lifeless mess that never gets going",
             "it 's a smart , funny look at an old story",
             "the acting is wooden and the plot makes no sense at all",
             "a gorgeous , witty , seductive movie",
             "nothing here seems to matter , and the jokes fall flat"]


def _padded(model, lengths=(12, 7)):
    """Random ids with padding at the end of the shorter rows."""
    ids = torch.randint(1, model.config.vocab_size, (len(lengths), max(lengths)),
                        generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * n + [0] * (max(lengths) - n) for n in lengths])
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("build", [tiny_bert, tiny_llama])
def test_at_k_equal_n_everything_is_kept_and_nothing_moves(build):
    dense = build()
    batch = _padded(dense)
    reference = pooled_hidden(dense, batch)
    moe = emoefy(copy.deepcopy(dense), num_experts=8, top_k=2, layers="all")
    shares = kept_shares(moe, batch, top_ks=[2, 8])
    assert set(shares) == set(range(dense.config.num_hidden_layers))
    for per_k in shares.values():
        assert per_k[8] == pytest.approx(1.0, abs=1e-6) and per_k[2] < 0.99
    every = change_when_routed(moe, batch, reference, dict.fromkeys(shares, 8))
    assert every["relative_l2"] < 1e-6 and every["worst_cosine"] > 1 - 1e-6
    routed = change_when_routed(moe, batch, reference, dict.fromkeys(shares, 2))
    assert routed["relative_l2"] > 1e-3


def test_kept_share_is_the_hand_computed_share_of_absolute_activation():
    dense = tiny_bert()
    batch = _padded(dense)
    inputs = {}

    def keep(module, args):
        inputs["x"] = args[0].reshape(-1, args[0].shape[-1])

    handle = dense.bert.encoder.layer[1].intermediate.register_forward_pre_hook(keep)
    model_outputs(dense, batch)
    handle.remove()
    w1, b1 = (dense.bert.encoder.layer[1].intermediate.dense.weight.detach(),
              dense.bert.encoder.layer[1].intermediate.dense.bias.detach())
    moe = emoefy(copy.deepcopy(dense), num_experts=4, top_k=2, layers=[1])
    expert = converted_blocks(moe)[1].expert_of_neuron
    # by hand, in the original neuron order: avg-k scores, top 2, |GELU(W1 x + b1)|
    x = inputs["x"][batch["attention_mask"].reshape(-1).bool()]
    keys = torch.stack([w1[expert == e].mean(dim=0) for e in range(4)])
    top = (x @ keys.t()).topk(2, dim=-1).indices
    activation = F.gelu(x @ w1.t() + b1).abs()
    selected = (expert.unsqueeze(0) == top[:, :1]) | (expert.unsqueeze(0) == top[:, 1:])
    expected = float(activation[selected].sum() / activation.sum())
    assert 0.2 < expected < 0.95
    assert kept_shares(moe, batch)[1][2] == pytest.approx(expected, rel=1e-5)


def test_receipt_records_the_chosen_k(minilm_slice):
    batch = _padded(minilm_slice, lengths=(9, 5, 7))
    dense_outputs, dense_hidden = model_outputs(minilm_slice, batch), pooled_hidden(
        minilm_slice, batch)
    emoefy(minilm_slice, num_experts=16, top_k=4, layers=[0, 1])
    receipt = conversion_receipt(minilm_slice, batch, dense_outputs, 1e-4, dense_hidden)
    record = receipt.to_dict()
    assert record["top_k"] == 4 and set(record["kept_share"]) == {"0", "1"}
    assert all(0.25 < share < 1 for share in record["kept_share"].values())
    assert -1 <= record["hidden_worst_cosine"] <= record["hidden_mean_cosine"] < 1
    assert record["hidden_relative_l2"] > 0


def test_random_split_keeps_less_than_clustering_on_real_minilm(minilm_path, minilm_slice):
    """Measured, not assumed: the paper's premise on the first two real MiniLM layers."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path)
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    shares = {split: kept_shares(emoefy(copy.deepcopy(minilm_slice), num_experts=64, top_k=16,
                                        layers="all", split=split), batch)
              for split in ("cluster", "random")}
    for layer in range(2):
        assert shares["random"][layer][16] < shares["cluster"][layer][16], (layer, shares)


def test_pairs_dropped_at_capacity_are_not_kept():
    dense = tiny_bert()
    batch = _padded(dense)
    shares = [kept_shares(emoefy(copy.deepcopy(dense), num_experts=4, top_k=2, layers=[1],
                                 capacity_factor=factor), batch)[1][2]
              for factor in (None, 0.5)]
    assert 0 < shares[1] < shares[0]
