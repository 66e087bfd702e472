import pytest
import torch

from emoe_cli.moe import emoe_modules, emoefy
from emoe_cli.moe.routers import load_balancing_loss
from tests.conftest import tiny_bert


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
    emoefy(tiny_bert(), num_experts=8, top_k=2, layers=[0], gate="learned", init="random")


def test_gate_options_are_checked():
    with pytest.raises(ValueError, match="gate.init='bogus' is unknown; valid: keys, random"):
        emoefy(tiny_bert(), num_experts=8, top_k=2, gate="learned", init="bogus")
    with pytest.raises(ValueError, match="gate='avg_k' got an option it does not take"):
        emoefy(tiny_bert(), num_experts=8, top_k=2, gate="avg_k", temperature=1.0)
