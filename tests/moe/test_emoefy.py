import copy

import pytest
import torch
import torch.nn.functional as F

from emoe_cli.experiment.method import convert
from emoe_cli.moe import EMoEFeedForward, attach_router_refresh, emoe_modules, emoefy
from tests.conftest import tiny_bert, tiny_gpt2, tiny_llama, tiny_vit
from tests.helpers import compose_config


def _inputs(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    if model.config.model_type == "vit":
        return {"pixel_values": torch.randn(2, 1, 16, 16, generator=generator)}
    ids = torch.randint(1, model.config.vocab_size, (2, 12), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _output(model, inputs):
    out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("build", [tiny_bert, tiny_gpt2, tiny_llama, tiny_vit])
def test_top_k_equal_to_num_experts_is_the_dense_model(build):
    dense = build()
    inputs = _inputs(dense)
    expected = _output(dense, inputs)
    moe = emoefy(copy.deepcopy(dense), num_experts=8, top_k=8, layers="all")
    assert len(list(emoe_modules(moe))) == dense.config.num_hidden_layers
    torch.testing.assert_close(_output(moe, inputs), expected, atol=1e-5, rtol=0)


def test_minilm_slice_at_full_top_k_is_dense(minilm_slice):
    inputs = {"input_ids": torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102]])}
    expected = _output(minilm_slice, inputs)
    moe = emoefy(copy.deepcopy(minilm_slice), num_experts=64, top_k=64, layers=[0, 1])
    torch.testing.assert_close(_output(moe, inputs), expected, atol=1e-5, rtol=0)


def test_minilm_slice_sparse_top_k_changes_outputs(minilm_slice):
    inputs = {"input_ids": torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102]])}
    dense = _output(minilm_slice, inputs)
    moe = emoefy(copy.deepcopy(minilm_slice), num_experts=64, top_k=16, layers=[1])
    assert not torch.allclose(_output(moe, inputs), dense, atol=1e-3)


def _masked_reference(w1, b1, w2, b2, act, expert_of_neuron, top_k, x):
    """EMoE written out in the original neuron order: route by mean key, mask, sum."""
    num_experts = int(expert_of_neuron.max()) + 1
    keys = torch.stack([w1[expert_of_neuron == e].mean(0) for e in range(num_experts)])
    chosen = (x @ keys.t()).topk(top_k, dim=-1).indices
    expert_mask = torch.zeros(x.shape[0], num_experts).scatter(1, chosen, 1.0)
    neuron_mask = expert_mask[:, expert_of_neuron]
    return (act(x @ w1.t() + b1) * neuron_mask) @ w2.t() + b2


def test_sparse_top_k_matches_masked_reference_bert():
    model = tiny_bert()
    layer = model.bert.encoder.layer[1]
    w1, b1 = layer.intermediate.dense.weight.clone(), layer.intermediate.dense.bias.clone()
    w2, b2 = layer.output.dense.weight.clone(), layer.output.dense.bias.clone()
    emoefy(model, num_experts=8, top_k=3, layers=[1])
    moe = model.bert.encoder.layer[1].intermediate
    assert isinstance(moe, EMoEFeedForward)
    x = torch.randn(20, 32, generator=torch.Generator().manual_seed(5))
    expected = _masked_reference(w1, b1, w2, b2, F.gelu, moe.expert_of_neuron, 3, x)
    torch.testing.assert_close(moe(x), expected, atol=1e-5, rtol=1e-5)


def test_sparse_top_k_matches_masked_reference_gpt2():
    model = tiny_gpt2()
    mlp = model.transformer.h[0].mlp
    w1, b1 = mlp.c_fc.weight.t().clone(), mlp.c_fc.bias.clone()
    w2, b2 = mlp.c_proj.weight.t().clone(), mlp.c_proj.bias.clone()
    act = mlp.act
    emoefy(model, num_experts=4, top_k=2, layers=[0])
    moe = model.transformer.h[0].mlp
    x = torch.randn(20, 32, generator=torch.Generator().manual_seed(6))
    expected = _masked_reference(w1, b1, w2, b2, act, moe.expert_of_neuron, 2, x)
    torch.testing.assert_close(moe(x), expected, atol=1e-5, rtol=1e-5)


def test_contract_attributes_and_balanced_experts():
    model = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0, 2])
    for moe in emoe_modules(model):
        assert moe.num_experts == 8 and moe.top_k == 2
        assert moe.expert_of_neuron.dtype == torch.long and moe.expert_of_neuron.shape == (64,)
        assert torch.bincount(moe.expert_of_neuron).tolist() == [8] * 8


def test_conversion_adds_no_trainable_parameters():
    dense = tiny_bert()
    count = sum(p.numel() for p in dense.parameters())
    moe = emoefy(copy.deepcopy(dense), num_experts=8, top_k=2, layers="all")
    assert sum(p.numel() for p in moe.parameters()) == count


def test_router_follows_keys_after_optimizer_step():
    model = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[1]).train()
    moe = next(emoe_modules(model))
    assert not any(p is moe.router.keys for p in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    attach_router_refresh(optimizer, model)
    before = moe.router.keys.clone()
    loss = model(**_inputs(model), labels=torch.tensor([0, 1])).loss
    loss.backward()
    optimizer.step()
    expected = moe.w1.weight.detach().view(8, 8, 32).mean(1)
    assert not torch.allclose(before, expected)
    torch.testing.assert_close(moe.router.keys, expected)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="top_k=9 must be between 1 and num_experts=8"):
        emoefy(tiny_bert(), num_experts=8, top_k=9)
    with pytest.raises(ValueError, match="does not divide the FFN size d_ff=64"):
        emoefy(tiny_bert(), num_experts=6, top_k=2)
    with pytest.raises(ValueError, match="gate='nope' is unknown; valid: avg_k"):
        emoefy(tiny_bert(), num_experts=8, top_k=2, gate="nope")
    with pytest.raises(ValueError, match="out of range for a model with 3 layers"):
        emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[3])
    with pytest.raises(ValueError, match="supported: .*bert.*gpt2"):
        emoefy(torch.nn.Linear(2, 2), num_experts=8, top_k=2)


def _within_expert_similarity(layer) -> float:
    """Mean cosine similarity of key rows that share an expert (rows are stored by expert)."""
    keys = F.normalize(layer.w1.weight.detach(), dim=-1)
    blocks = keys.view(layer.num_experts, layer.expert_size, -1)
    similarity = blocks @ blocks.transpose(1, 2)
    size = layer.expert_size
    return float((similarity.sum() - similarity.diagonal(dim1=1, dim2=2).sum())
                 / (layer.num_experts * size * (size - 1)))


def test_moe_split_random_from_the_config_gives_unclustered_experts():
    """`moe.split=random` (the clustering ablation) reaches the layers: its experts' keys are
    no more alike than any two keys, where clustering groups alike keys; seeds differ."""
    def converted(*overrides):
        model = tiny_bert()
        convert(model, compose_config(["moe.num_experts=8", "moe.top_k=2", "moe.layers=[0]",
                                       "moe.cluster_cache=null", *overrides]))
        return next(emoe_modules(model))

    clustered, shuffled = converted(), converted("moe.split=random")
    reseeded = converted("moe.split=random", "moe.cluster_seed=1")
    assert _within_expert_similarity(clustered) > _within_expert_similarity(shuffled) + 0.1
    assert abs(_within_expert_similarity(shuffled)) < 0.1
    assert not torch.equal(shuffled.expert_of_neuron, reseeded.expert_of_neuron)
    assert sorted(torch.bincount(shuffled.expert_of_neuron).tolist()) == [8] * 8
