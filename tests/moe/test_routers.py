import pytest
import torch

from emoe_cli.experiment.method import convert
from emoe_cli.moe import emoe_modules, emoefy
from emoe_cli.moe.routers import AvgKRouter, LearnedRouter, load_balancing_loss, pick_experts
from tests.conftest import tiny_bert
from tests.helpers import compose_config


def test_balance_loss_is_one_when_uniform_and_grows_when_skewed():
    uniform = torch.full((4, 4), 0.25)
    spread = torch.tensor([[0], [1], [2], [3]])
    assert load_balancing_loss(uniform, spread).item() == pytest.approx(1.0)
    # all 4 selections go to expert 0 whose mean prob is 0.7: 4 * (1 * 0.7) = 2.8
    skewed = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(4, 1)
    assert load_balancing_loss(skewed, torch.zeros(4, 1, dtype=torch.long)).item() == \
        pytest.approx(2.8)


def test_learned_router_starts_from_the_expert_keys_and_trains():
    model = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[1], gate="learned").train()
    moe = next(emoe_modules(model))
    torch.testing.assert_close(moe.router.weight.detach(),
                               moe.w1.weight.detach().view(8, 8, 32).mean(1))
    ids = torch.randint(1, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids, labels=torch.tensor([0, 1]))
    assert moe.aux_loss is not None and moe.aux_loss.item() >= 1.0 - 1e-6
    (out.loss + 0.01 * moe.aux_loss).backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_learned_router_weights_selected_experts_by_softmax():
    model = emoefy(tiny_bert(), num_experts=8, top_k=3, layers=[0], gate="learned")
    moe = next(emoe_modules(model)).eval()
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(1))
    chosen, weights = moe.route(x)
    assert chosen.shape == weights.shape == (5, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    h = moe.act(moe.w1(x)).view(5, 8, 8)
    mask = torch.zeros(5, 8).scatter(1, chosen, weights)
    expected = moe.w2((h * mask.unsqueeze(-1)).view(5, 64))
    torch.testing.assert_close(moe(x), expected)


def test_cosine_router_is_trainable_and_random_init_is_an_option():
    model = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0], gate="cosine",
                   proj_dim=16).train()
    moe = next(emoe_modules(model))
    ids = torch.randint(1, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    assert moe.router.proj.weight.grad is not None and moe.router.log_temperature.grad is not None
    random = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0], gate="learned",
                    init="random")
    weight = next(emoe_modules(random)).router.weight.detach()
    assert 0.015 < weight.std().item() < 0.025  # N(0, 0.02); the mean keys spread 0.011
    keys = next(emoe_modules(random)).w1.weight.detach().view(8, 8, 32).mean(1)
    assert not torch.allclose(weight, keys, atol=1e-3)


def test_gate_options_are_checked():
    with pytest.raises(ValueError, match="gate.init='bogus' is unknown; valid: keys, random"):
        emoefy(tiny_bert(), num_experts=8, top_k=2, gate="learned", init="bogus")
    with pytest.raises(ValueError, match="gate='avg_k' got an option it does not take"):
        emoefy(tiny_bert(), num_experts=8, top_k=2, gate="avg_k", temperature=1.0)


def test_pick_experts_top_other_and_bottom():
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.3]])
    top, _ = pick_experts(logits, 1, "top")
    other, _ = pick_experts(logits, 1, "other")
    bottom, scores = pick_experts(logits, 1, "bottom")
    assert top.tolist() == [[1]] and bottom.tolist() == [[0]]
    assert scores.item() == pytest.approx(0.1)
    assert sorted(other[0].tolist()) == [0, 2, 3]  # everything but the top-1
    with pytest.raises(ValueError, match="selection='worst' is unknown; valid: top, other"):
        pick_experts(logits, 1, "worst")


@pytest.mark.parametrize("selection, count", [("other", 6), ("bottom", 2)])
def test_layer_routes_to_the_selected_experts(selection, count):
    model = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0], selection=selection)
    moe = next(emoe_modules(model))
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(2))
    chosen, weights = moe.route(x)
    scores = moe.router(x)
    assert chosen.shape == (5, count) and torch.equal(weights, torch.ones(5, count))
    best = scores.topk(2, dim=-1).indices
    overlap = (chosen.unsqueeze(-1) == best.unsqueeze(1)).any(-1).any(-1)
    assert not overlap.any()  # neither ablation ever gives a token one of its top-2
    h = moe.act(moe.w1(x)).view(5, 8, 8)
    mask = torch.zeros(5, 8).scatter(1, chosen, 1.0)
    torch.testing.assert_close(moe(x), moe.w2((h * mask.unsqueeze(-1)).view(5, 64)))


def test_other_selection_needs_top_k_below_num_experts():
    with pytest.raises(ValueError, match="none when top_k=8; valid: top_k < 8"):
        emoefy(tiny_bert(), num_experts=8, top_k=8, selection="other")


def test_avg_k_keys_are_each_experts_mean_key_blended_by_momentum():
    rows = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])  # 2 experts x 2 rows
    router = AvgKRouter(2, 2, momentum=0.75)
    router.refresh(rows, initial=True)  # the first keys are the means themselves
    assert router.keys.tolist() == [[2.0, 0.0], [0.0, 3.0]]
    router.refresh(rows * 2)  # means [4, 0], [0, 6]: keys move a quarter of the way
    assert router.keys.tolist() == [[2.5, 0.0], [0.0, 3.75]]
    plain = AvgKRouter(2, 2)
    plain.refresh(rows, initial=True)
    plain.refresh(rows * 2)
    assert plain.keys.tolist() == [[4.0, 0.0], [0.0, 6.0]]  # momentum 0: the new means


def test_avg_k_normalize_gives_unit_keys_so_key_length_cannot_win():
    rows = torch.tensor([[3.0, 4.0], [3.0, 4.0], [0.0, 0.5], [0.0, 0.5]])
    router = AvgKRouter(2, 2, normalize=True)
    router.refresh(rows, initial=True)
    torch.testing.assert_close(router.keys, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    # (0, 1) is closer in angle to expert 1, though expert 0's raw key is ten times longer
    assert router(torch.tensor([[0.0, 1.0]])).argmax().item() == 1


def test_gate_momentum_and_normalize_reach_the_routers_from_the_config():
    cfg = compose_config(["moe.num_experts=8", "moe.top_k=2", "moe.layers=[0]",
                          "moe.cluster_cache=null", "gate.momentum=0.5", "gate.normalize=true"])
    model = tiny_bert()
    convert(model, cfg)
    router = next(emoe_modules(model)).router
    assert (router.momentum, router.normalize) == (0.5, True)
    torch.testing.assert_close(router.keys.norm(dim=-1), torch.ones(8))


def test_router_noise_perturbs_training_logits_only():
    router = LearnedRouter(8, 16, noise=0.5)
    torch.nn.init.normal_(router.weight)
    x = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    clean = x @ router.weight.detach().t()
    noise = router.train()(x).detach() - clean
    assert 0.45 < noise.std().item() < 0.55 and abs(noise.mean().item()) < 0.02
    torch.testing.assert_close(router.eval()(x).detach(), clean)
    quiet = LearnedRouter(8, 16)
    quiet.weight = router.weight
    torch.testing.assert_close(quiet.train()(x).detach(), clean)


def test_every_gate_has_its_router_its_option_schema_and_its_preset():
    """A gate's name is known in one place per layer (router class, options schema, preset):
    one missing means the CLI accepts a gate the model cannot build, or the reverse."""
    from emoe_cli.config.checks import available_choices
    from emoe_cli.config.schema import GATE_SCHEMAS
    from emoe_cli.moe.routers import ROUTERS

    assert set(ROUTERS) == set(GATE_SCHEMAS) == set(available_choices("gate"))
    for name in GATE_SCHEMAS:
        assert compose_config([f"gate={name}"]).gate.name == name
