"""NoisyTune, the capacity factor and the gated-FFN `select` options."""

import copy

import pytest
import torch

from emoe_cli.moe import emoe_modules, emoefy, export_dense, load_emoe, save_emoe
from emoe_cli.moe.noise import add_uniform_noise
from emoe_cli.moe.receipt import all_experts, model_outputs
from emoe_cli.moe.routers import drop_over_capacity
from tests.conftest import tiny_bert, tiny_llama


def test_noisy_tune_scales_uniform_noise_by_each_weights_std():
    model, reference = tiny_bert(), tiny_bert()
    add_uniform_noise(model, 0.15, seed=0)
    for (name, noisy), clean in zip(model.named_parameters(), reference.parameters()):
        delta = noisy.detach() - clean.detach()
        if clean.numel() < 2 or name.startswith("classifier."):  # the head is not perturbed
            assert torch.equal(delta, torch.zeros_like(delta)), name
            continue
        assert delta.abs().max() > 0 or clean.std() == 0, name
        bound = (0.15 * clean.std() / 2).item()
        assert delta.abs().max() <= bound * (1 + 1e-5), name
        if clean.numel() >= 1000:  # uniform on [-b, b] has std b / sqrt(3)
            assert delta.std().item() == pytest.approx(bound / 3**0.5, rel=0.1), name
    again = add_uniform_noise(tiny_bert(), 0.15, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), model.parameters()))
    untouched = add_uniform_noise(tiny_bert(), 0.0)
    assert all(torch.equal(a, b) for a, b in zip(untouched.parameters(), reference.parameters()))
    with pytest.raises(ValueError, match="noise_lambda=-1 is invalid"):
        add_uniform_noise(tiny_bert(), -1)


def test_capacity_serves_first_choices_first_and_drops_the_overflow():
    # 4 tokens, k = 2, N = 2 -> capacity ceil(0.5 * 4 * 2 / 2) = 2 per expert
    chosen = torch.tensor([[0, 1], [0, 1], [0, 1], [1, 0]])
    kept = drop_over_capacity(chosen, torch.ones(4, 2), num_experts=2, capacity_factor=0.5)
    # expert 0: first choices of tokens 0, 1 (token 2's first choice overflows);
    # expert 1: token 3's first choice, then token 0's second choice
    assert kept.tolist() == [[1, 1], [1, 0], [0, 0], [1, 0]]
    roomy = drop_over_capacity(chosen, torch.ones(4, 2), num_experts=2, capacity_factor=1.0)
    assert roomy.tolist() == [[1, 1]] * 4


def test_layer_with_a_capacity_drops_tokens_as_weight_zero():
    model = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0], capacity_factor=0.25)
    moe = next(emoe_modules(model))
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(4))
    chosen, weights = moe.route(x)
    capacity = 2  # ceil(0.25 * 16 * 2 / 8)
    served = torch.zeros(8).index_add_(0, chosen.reshape(-1), weights.reshape(-1))
    assert served.max() <= capacity and (weights == 0).any()
    h = moe.act(moe.w1(x)).view(16, 8, 8)
    mask = torch.zeros(16, 8).scatter(1, chosen, weights)
    torch.testing.assert_close(moe(x), moe.w2((h * mask.unsqueeze(-1)).view(16, 64)))


@pytest.mark.parametrize("select", ["up", "inter", "gate_abs", "inter_abs"])
def test_select_scores_experts_by_the_chosen_projection(select):
    model = emoefy(tiny_llama(), num_experts=8, top_k=2, layers=[0], select=select)
    moe = next(emoe_modules(model))
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(5))
    gate, up = moe.w1(x), moe.w_up(x)
    values = {"up": up, "inter": moe.act(gate) * up, "gate_abs": gate.abs(),
              "inter_abs": (moe.act(gate) * up).abs()}[select]
    expected = values.view(6, 8, 8).mean(-1).topk(2, dim=-1).indices
    assert torch.equal(moe.route(x)[0].sort(-1).values, expected.sort(-1).values)


def test_select_options_are_checked():
    bert = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0], select="up")
    with pytest.raises(ValueError, match="select='up' needs a gated FFN"):
        next(emoe_modules(bert)).route(torch.randn(3, 32))
    with pytest.raises(ValueError, match="needs gate='avg_k'"):
        emoefy(tiny_llama(), num_experts=8, top_k=2, gate="learned", select="inter")
    with pytest.raises(ValueError, match="select='mean' is unknown; valid: gate, up, inter"):
        emoefy(tiny_llama(), num_experts=8, top_k=2, select="mean")
    with pytest.raises(ValueError, match="capacity_factor=0 is invalid"):
        emoefy(tiny_bert(), num_experts=8, top_k=2, capacity_factor=0)


def test_gmoe_copies_of_the_whole_ffn_start_as_the_dense_model(tmp_path):
    dense = tiny_bert()
    inputs = {"input_ids": torch.randint(1, 100, (2, 12),
                                         generator=torch.Generator().manual_seed(0))}
    expected = model_outputs(dense, inputs)
    count = sum(p.numel() for p in dense.parameters())
    gmoe = emoefy(copy.deepcopy(dense), num_experts=4, top_k=2, layers=[1], gate="cosine",
                  proj_dim=8, expert_repeat=4)
    layer = next(emoe_modules(gmoe))
    assert layer.num_experts == 4 and layer.w1.weight.shape == (4 * 64, 32)
    assert sum(p.numel() for p in gmoe.parameters()) > count + 3 * 2 * 64 * 32
    # identical copies, softmax weights summing to 1: the dense FFN until training
    torch.testing.assert_close(model_outputs(gmoe, inputs), expected, atol=1e-5, rtol=0)
    with all_experts(gmoe):  # every copy at weight 1/4: also dense
        torch.testing.assert_close(model_outputs(gmoe, inputs), expected, atol=1e-5, rtol=0)


def test_repeated_experts_save_exactly_but_refuse_a_dense_export(tmp_path):
    model = emoefy(tiny_bert(), num_experts=4, top_k=3, layers=[0], gate="cosine",
                   proj_dim=8, expert_repeat=2)
    with torch.no_grad():  # copies drift apart in training
        next(emoe_modules(model)).w1.weight.add_(torch.randn(128, 32) * 0.05)
    inputs = {"input_ids": torch.tensor([[5, 17, 42, 9, 3]])}
    save_emoe(model, tmp_path / "saved")
    again = load_emoe(tmp_path / "saved")
    saved, loaded = model.state_dict(), again.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    torch.testing.assert_close(model_outputs(again, inputs), model_outputs(model, inputs),
                               atol=1e-6, rtol=0)  # same tensors; BLAS may round differently
    assert next(emoe_modules(again)).expert_repeat == 2
    with pytest.raises(ValueError, match="expert_repeat=2: its expert copies add parameters"):
        export_dense(model, tmp_path / "dense")
    with pytest.raises(ValueError, match="valid: a trained gate"):
        emoefy(tiny_bert(), num_experts=4, top_k=2, expert_repeat=2)


def test_expert_repeat_gives_expert_e_its_own_copy_of_groups_e_to_e_plus_r_minus_1():
    """The official construction (moe_utils.py:110-124), restated: expert e of N = 4 with
    repeat 2 holds copies of the key rows of groups e and e + 1 (mod 4)."""
    dense = tiny_bert()
    model = emoefy(copy.deepcopy(dense), num_experts=4, top_k=2, layers=[0], gate="cosine",
                   proj_dim=8, expert_repeat=2)
    layer = next(emoe_modules(model))
    group = layer.expert_of_neuron[:64]  # tile 0 keeps the clustered assignment
    assert torch.equal(torch.bincount(group), torch.full((4,), 16))
    keys = dense.bert.encoder.layer[0].intermediate.dense.weight.detach()
    blocks = layer.w1.weight.detach().view(4, 32, 32)  # [expert, its neurons, d]
    for expert in range(4):
        owned = torch.isin(group, torch.tensor([expert, (expert + 1) % 4]))
        expected = keys[owned]
        got = blocks[expert]
        # the same rows, as sets (order inside an expert does not change its function)
        assert torch.equal(got[got[:, 0].argsort()], expected[expected[:, 0].argsort()])
    assert layer.num_experts == 4 and layer.router.weight.shape[0] == 4


def test_a_single_trained_expert_keeps_its_softmax_probability_as_weight():
    """Tutel weights a top-1 expert by its probability over all experts (no renormalising);
    with k > 1 the chosen probabilities are renormalised to sum 1."""
    from emoe_cli.moe.layer import selected_weights

    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    assert torch.equal(selected_weights(probs, torch.tensor([[0], [2]])),
                       torch.tensor([[0.5], [0.8]]))
    torch.testing.assert_close(selected_weights(probs, torch.tensor([[0, 1], [2, 0]])),
                               torch.tensor([[0.625, 0.375], [0.8 / 0.9, 0.1 / 0.9]]))
    model = emoefy(tiny_bert(), num_experts=4, top_k=1, layers=[0], gate="cosine", proj_dim=8,
                   expert_repeat=4)
    layer = next(emoe_modules(model))
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    chosen, weights = layer.route(x)
    expected = layer.router(x).float().softmax(-1).gather(1, chosen)
    torch.testing.assert_close(weights.float(), expected)
    assert (weights < 1).all()
