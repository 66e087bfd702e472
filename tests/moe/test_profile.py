"""The `official` profile's layer against an explicit restatement of the official Tutel layer,
and each profile switch alone changing only what it names."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
from torch.distributions.normal import Normal

from emoe_cli.moe import emoe_modules, emoefy
from emoe_cli.moe.profile import PROFILES, Profile, resolve_profile
from tests.conftest import tiny_bert, tiny_gpt2, tiny_llama, tiny_vit

OFFICIAL, CLEAN = PROFILES["official"], PROFILES["clean"]
N = 8  # tiny models: d_ff 64 = 8 experts of 8 neurons


def dense_ffn(model, family):
    """(w1, b1, w2, b2, act) of block 0's FFN, read straight from the Hugging Face modules."""
    if family == "bert":
        block = model.bert.encoder.layer[0]
        return (block.intermediate.dense.weight, block.intermediate.dense.bias,
                block.output.dense.weight, block.output.dense.bias,
                block.intermediate.intermediate_act_fn)
    mlp = model.transformer.h[0].mlp
    return mlp.c_fc.weight.t(), mlp.c_fc.bias, mlp.c_proj.weight.t(), mlp.c_proj.bias, mlp.act


def layer_of(model, family):
    return (model.bert.encoder.layer[0].intermediate if family == "bert"
            else model.transformer.h[0].mlp)


def build(family, profile, top_k=2, execution="auto", **options):
    model = tiny_bert() if family == "bert" else tiny_gpt2()
    with torch.no_grad():  # Hugging Face starts biases at 0, which would hide the b2 split
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    dense = [t.detach().clone() if torch.is_tensor(t) else t for t in dense_ffn(model, family)]
    emoefy(model, num_experts=N, top_k=top_k, layers=[0], profile=profile, execution=execution,
           **options)
    return dense, layer_of(model, family)


def skewed_tokens(batch=4, length=15, d=32, seed=1):
    """Tokens close to one common direction, so they pick the same experts and overflow.
    60 tokens over 8 experts: Tutel's capacity k * int(1.5 * ceil(60 / 8)) = 12k differs from
    GShard's ceil(1.5 * 60 * k / 8)."""
    generator = torch.Generator().manual_seed(seed)
    common = torch.randn(d, generator=generator) * 2
    return common + 0.5 * torch.randn(batch, length, d, generator=generator)


@torch.no_grad()
def tutel_reference(dense, expert_of_neuron, x, top_k, capacity_factor=1.5):
    """The official layer in evaluation, written out pair by pair (Tutel: moe_layer.py:271-346,
    fast_dispatch.py:140-201, the CPU kernels' `location < capacity` test, experts/ffn.py,
    moe_utils.py:143 for b2 / k). Returns the output and how many pairs were dropped."""
    w1, b1, w2, b2, act = dense
    tokens = x.reshape(-1, x.shape[-1])
    count = tokens.shape[0]
    blocks = [expert_of_neuron == e for e in range(N)]
    keys = torch.stack([w1[block].mean(dim=0) for block in blocks])  # avg-k, no bias
    scores = (tokens.float() @ keys.float().t()).softmax(dim=1)
    chosen = scores.topk(top_k, dim=1).indices
    capacity = top_k * int(capacity_factor * math.ceil(count / N))
    # Batch priority: tokens by their largest score, highest first (Python's sort is stable).
    order = sorted(range(count), key=lambda t: -float(scores[t].max()))
    taken = [0] * N  # slots handed out per expert, counting pairs past capacity too
    slot = {}
    for rank in range(top_k):  # every first choice before any second choice
        for t in order:
            e = int(chosen[t, rank])
            if taken[e] < capacity:
                slot[t, rank] = taken[e]
            taken[e] += 1
    dispatched = torch.zeros(N, capacity, tokens.shape[1])
    for (t, rank), place in slot.items():
        dispatched[chosen[t, rank], place] = tokens[t]
    expert_out = torch.stack([act(dispatched[e] @ w1[blocks[e]].t() + b1[blocks[e]])
                              @ w2[:, blocks[e]].t() + b2 / top_k for e in range(N)])
    out = torch.zeros_like(tokens)
    for (t, rank), place in slot.items():
        out[t] += expert_out[chosen[t, rank], place]
    return out.view_as(x), count * top_k - len(slot)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
@pytest.mark.parametrize("execution", ["masked", "sparse"])
@pytest.mark.parametrize("top_k", [2, 3])
def test_official_layer_equals_tutel_dispatch_with_drops(family, execution, top_k):
    dense, layer = build(family, "official", top_k=top_k, execution=execution)
    x = skewed_tokens()
    expected, dropped = tutel_reference(dense, layer.expert_of_neuron, x, top_k)
    assert dropped > 0  # capacity binds: the test covers dropping
    with torch.no_grad():
        got = layer.eval()(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_official_at_k_equal_n_is_dense(family):
    dense, layer = build(family, "official", top_k=N)
    w1, b1, w2, b2, act = dense
    x = skewed_tokens()
    with torch.no_grad():
        torch.testing.assert_close(layer.eval()(x), act(x @ w1.t() + b1) @ w2.t() + b2,
                                   atol=1e-5, rtol=1e-5)


def test_official_with_room_for_every_pair_equals_clean():
    """k < N and a capacity that never binds: b2 / k over k kept pairs is b2 once."""
    roomy = replace(OFFICIAL, capacity_factor=float(N))
    _, official = build("bert", roomy, execution="sparse")
    _, clean = build("bert", "clean", execution="sparse")
    x = skewed_tokens()
    with torch.no_grad():
        torch.testing.assert_close(official.eval()(x), clean.eval()(x), atol=1e-6, rtol=1e-6)


def only(**switches) -> Profile:
    return replace(CLEAN, name="official", **switches)


def eval_out(profile, execution="sparse", x=None):
    _, layer = build("bert", profile, execution=execution)
    with torch.no_grad():
        return layer.eval()(skewed_tokens() if x is None else x), layer


def test_token_dropping_alone_changes_only_tokens_that_lost_a_pair():
    x = skewed_tokens()
    clean, layer = eval_out(CLEAN, x=x)
    dropped, _ = eval_out(only(token_dropping=True), x=x)
    chosen, weights = layer.eval().route(x.reshape(-1, 32))
    _, dropping = build("bert", only(token_dropping=True))
    _, kept = dropping.eval().route(x.reshape(-1, 32))
    lost = (kept == 0).any(dim=-1).view(x.shape[:2])
    assert lost.any() and not lost.all()
    torch.testing.assert_close(dropped[~lost], clean[~lost])
    assert ((dropped[lost] - clean[lost]).abs().amax(dim=-1) > 1e-4).all()


def test_b2_split_alone_scales_b2_by_the_kept_share():
    x = skewed_tokens()
    dropped, layer = eval_out(only(token_dropping=True), x=x)
    split, _ = eval_out(only(token_dropping=True, b2_split=True), x=x)
    _, weights = layer.route(x.reshape(-1, 32))
    share = (weights.sum(dim=-1) / layer.top_k).view(*x.shape[:2], 1)
    torch.testing.assert_close(split - dropped, (share - 1) * layer.w2.bias, atol=1e-6,
                               rtol=1e-6)
    # Without drops every token keeps k pairs: b2 / k summed k times is b2.
    torch.testing.assert_close(eval_out(only(b2_split=True), x=x)[0], eval_out(CLEAN, x=x)[0])


class Recorder(torch.nn.Module):
    """An activation that records its inputs."""

    def __init__(self, act):
        super().__init__()
        self.act, self.seen = act, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.act(x)


@pytest.mark.parametrize("execution", ["masked", "sparse"])
@pytest.mark.parametrize("family,before", [("bert", True), ("vit", False)])
def test_expert_dropout_alone_drops_pre_activations_in_training_only(execution, family, before):
    if family == "vit":
        model = tiny_vit()
        emoefy(model, num_experts=N, top_k=2, layers=[0], execution=execution,
               profile=only(expert_dropout=0.5))
        layer = next(emoe_modules(model))
        x = skewed_tokens(d=32)
    else:
        _, layer = build("bert", only(expert_dropout=0.5), execution=execution)
        x = skewed_tokens()
    assert layer.dropout_before is before
    layer.act = Recorder(layer.act)
    torch.manual_seed(0)
    layer.train()(x)
    zeros = torch.cat([s.flatten() for s in layer.act.seen]).eq(0).float().mean()
    # Before the activation half the inputs are zeroed; after it the inputs are intact.
    assert (0.4 < zeros < 0.6) if before else zeros == 0
    train = layer(x)
    layer.act.seen.clear()
    with torch.no_grad():
        layer.eval()
        assert not torch.equal(layer(x), train.detach())
        assert torch.cat([s.flatten() for s in layer.act.seen]).ne(0).all()


def test_expert_dropout_gradients_use_the_forward_mask():
    """The sparse path redraws no mask in its backward pass: with a reseeded draw the layer is
    a fixed function of its first-layer weights (routing reads the router's keys, not them),
    whose gradient matches finite differences."""
    _, layer = build("bert", only(expert_dropout=0.3), execution="sparse")
    layer.train()
    x = skewed_tokens()
    weight = layer.w1.weight
    direction, probe = torch.randn_like(weight), torch.randn(*x.shape[:2], 32)

    def f():
        torch.manual_seed(3)
        return (torch.tanh(layer(x)) * probe).sum()

    f().backward()
    analytic = (weight.grad * direction).sum()
    eps = 1e-3  # the sparse path sums in fp32: not much smaller
    with torch.no_grad():
        weight += eps * direction
        plus = f()
        weight -= 2 * eps * direction
        minus = f()
    torch.testing.assert_close(analytic, (plus - minus) / (2 * eps), rtol=3e-3, atol=1e-4)


def test_router_noise_alone_selects_on_logits_plus_noise_over_n_in_training():
    _, layer = build("bert", only(router_noise=1.0))
    x = skewed_tokens().reshape(-1, 32)
    logits = x @ layer.router.keys.t()
    torch.manual_seed(5)
    noisy = logits + torch.randn_like(logits) / N
    torch.manual_seed(5)
    chosen, _ = layer.train().route(x)
    assert torch.equal(chosen, noisy.topk(2, dim=-1).indices)
    assert not torch.equal(chosen, logits.topk(2, dim=-1).indices)
    assert torch.equal(layer.eval().route(x)[0], logits.topk(2, dim=-1).indices)


def tutel_balance_loss(logits, noisy, top_k, noise):
    """losses.py:21-43 as the official layer calls it (moe_layer.py:283-285)."""
    probs = logits.softmax(dim=1)
    threshold = noisy.topk(top_k, dim=1).values[:, -1:]
    load = Normal(0.0, noise / logits.shape[1]).cdf(probs - threshold).sum(0)
    importance = probs.sum(0)
    return (importance.var() / (importance.mean() ** 2 + 1e-10)
            + load.var() / (load.mean() ** 2 + 1e-10)) / 2


def test_balance_loss_is_tutels_and_reaches_the_hidden_states_for_avg_k():
    _, layer = build("bert", only(router_noise=1.0, balance_loss_weight=0.01))
    x = skewed_tokens().reshape(-1, 32).requires_grad_()
    logits = x.detach() @ layer.router.keys.t()
    torch.manual_seed(7)
    noisy = logits + torch.randn_like(logits) / N
    torch.manual_seed(7)
    layer.train()(x)
    torch.testing.assert_close(layer.aux_loss, tutel_balance_loss(logits, noisy, 2, 1.0))
    layer.aux_loss.backward()
    assert x.grad.abs().sum() > 0
    _, clean = build("bert", only(router_noise=1.0))
    clean.train()(x)
    assert clean.aux_loss is None  # avg-k leaves no loss without the switch


def test_balance_loss_without_noise_is_refused():
    with pytest.raises(ValueError, match="profile.balance_loss_weight=0.01 needs "
                                         "profile.router_noise > 0"):
        resolve_profile({"name": "official", "router_noise": 0.0})


def test_router_fp32_alone_routes_in_fp32_under_autocast():
    x = skewed_tokens().reshape(-1, 32)
    for profile, dtype in ((only(router_fp32=True), torch.float32), (CLEAN, torch.bfloat16)):
        _, layer = build("bert", profile)
        layer.router.keys = layer.router.keys.bfloat16()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer._logits(x.bfloat16()).dtype == dtype


def test_gpt2_output_dropout_goes_with_the_switch_only():
    assert build("gpt2", only(moe_output_dropout=False))[1].dropout is None
    assert build("gpt2", CLEAN)[1].dropout is not None


def test_profile_switches_on_llama_are_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"profile.token_dropping=True does not apply to model "
                                         r"family 'llama'.*valid there: profile=clean"):
        emoefy(tiny_llama(), num_experts=N, top_k=2, layers=[0], profile="official")
    emoefy(tiny_llama(), num_experts=N, top_k=2, layers=[0], profile=only(max_grad_norm=0.0))


def test_unknown_profile_and_keys_are_refused():
    with pytest.raises(ValueError, match="profile='tutel' is unknown; valid: clean, official"):
        emoefy(tiny_bert(), num_experts=N, top_k=2, profile="tutel")
    with pytest.raises(ValueError, match="profile.dropout is unknown; valid: .*expert_dropout"):
        resolve_profile({"name": "official", "dropout": 0.1})
    with pytest.raises(ValueError, match=r"profile.expert_dropout=1.0 is invalid; valid: a "
                                         r"number in \[0, 1\)"):
        resolve_profile({"name": "official", "expert_dropout": 1.0})


def test_official_profile_survives_save_and_load(tmp_path):
    from emoe_cli.moe import load_emoe, save_emoe

    model = emoefy(tiny_bert(), num_experts=N, top_k=2, layers=[0], profile="official")
    loaded = load_emoe(save_emoe(model, tmp_path / "m"))
    assert loaded.bert.encoder.layer[0].intermediate.profile == OFFICIAL
    assert copy.deepcopy(OFFICIAL) == OFFICIAL
