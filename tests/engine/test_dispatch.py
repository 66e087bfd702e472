"""The sparse path computes exactly what the masked path does, forward and backward."""

import copy

import pytest
import torch
from torch import nn

from emoe_cli.engine.cost_model import (
    HOT_COST,
    MASKED_COST,
    ROW_MULTIPLE,
    fixed_cost,
    hot_share,
    sparse_cost,
    sparse_may_pay,
)
from emoe_cli.engine.dispatch import group_by_expert, sparse_ffn
from emoe_cli.moe import EMoEFeedForward, emoe_modules, emoefy
from emoe_cli.moe.layer import DenseFFN
from emoe_cli.moe.routers import LearnedRouter
from tests.conftest import tiny_bert, tiny_llama

D, D_FF, N = 16, 48, 8


def _layer(gated: bool, bias: bool, weighted: bool, top_k: int = 3, d_ff: int = D_FF,
           act: nn.Module | None = None) -> EMoEFeedForward:
    torch.manual_seed(0)

    def maybe(*shape):
        return torch.randn(*shape) if bias else None

    ffn = DenseFFN(w1=torch.randn(d_ff, D), b1=maybe(d_ff), w2=torch.randn(D, d_ff) / 4,
                   b2=maybe(D), act=act if act is not None else nn.SiLU() if gated else nn.GELU(),
                   w_up=torch.randn(d_ff, D) if gated else None,
                   b_up=maybe(d_ff) if gated else None)
    expert_of_neuron = torch.randperm(d_ff) % N
    router = LearnedRouter(N, D) if weighted else None
    return EMoEFeedForward(ffn, expert_of_neuron, top_k, router, execution="masked")


def _run(layer: EMoEFeedForward, x: torch.Tensor, grad: torch.Tensor,
         dtype: torch.dtype = torch.float32):
    """Output, input gradient and every parameter's gradient of one forward+backward (under
    CPU autocast to `dtype` unless fp32)."""
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        y = layer(x)
    y.float().backward(grad)
    return y.detach().float(), x.grad, {n: p.grad for n, p in layer.named_parameters()}


def _assert_same(masked: EMoEFeedForward, x: torch.Tensor, rel: float = 1e-4,
                 prepare=lambda layer: None, dtype: torch.dtype = torch.float32) -> None:
    masked.aux_loss = None  # a graph from an earlier forward cannot be deep-copied
    sparse = copy.deepcopy(masked)
    sparse.execution = "sparse"
    prepare(masked)
    prepare(sparse)
    grad = torch.randn(x.shape[0], D, generator=torch.Generator().manual_seed(1))
    expected, actual = _run(masked, x, grad, dtype), _run(sparse, x, grad, dtype)
    for want, got in [(expected[0], actual[0]), (expected[1], actual[1]),
                      *((expected[2][n], actual[2][n]) for n in expected[2])]:
        assert got is not None
        assert (got - want).abs().max() <= rel * want.abs().max()


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "softmax"])
def test_sparse_equals_masked_forward_and_backward(gated, bias, weighted, dtype, threads,
                                                   gathered, monkeypatch):
    """The gathered experts' kernel, on one thread and on three (whatever the machine has),
    against the masked path in the same precision."""
    monkeypatch.setattr("emoe_cli.engine.dispatch.thread_count", lambda device: threads)
    layer = _layer(gated, bias, weighted)
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(2))
    _assert_same(layer, x, rel=1e-4 if dtype == torch.float32 else 0.04, dtype=dtype)
    assert [t for t, _ in gathered] == [threads, threads]  # forward, backward
    assert all(pairs >= 40 * 3 for _, pairs in gathered)  # bf16 may pad with weight-0 pairs


@pytest.mark.parametrize("act", [nn.Identity(), nn.ReLU(inplace=True)],
                         ids=["identity", "relu-inplace"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "softmax"])
def test_activations_that_return_or_overwrite_their_input_keep_the_backward_exact(
        act, weighted, monkeypatch):
    """The gathered experts keep their pre-activations for the backward pass and scale the
    activations in place: neither an activation that returns its input nor one that
    overwrites it (`inplace=True`) may change them."""
    monkeypatch.setattr("emoe_cli.engine.strategy.hot_share",
                        lambda size, training, overhead=1.0: 1.0)
    layer = _layer(gated=False, bias=True, weighted=weighted, act=act)
    _assert_same(layer, torch.randn(40, D, generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
def test_heavily_skewed_routing_is_dropless(gated):
    layer = _layer(gated, bias=True, weighted=False)
    direction = torch.randn(D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # experts 0 and 1 point where every token points
        layer.router.keys[0] = 10 * direction
        layer.router.keys[1] = 9 * direction
    x = torch.randn(64, D, generator=torch.Generator().manual_seed(4)) + 3 * direction
    chosen, weights = layer.route(x)
    counts = group_by_expert(chosen, weights, N).counts
    assert counts[0] == counts[1] == 64 and sum(counts) == 64 * 3
    _assert_same(layer, x)


def test_pairs_of_weight_zero_are_skipped_and_change_nothing(gathered):
    """A capacity limit reports a dropped pair as weight 0; both paths must ignore it."""

    def drop_some_pairs(layer):
        route = layer.route

        def route_with_drops(x):
            chosen, weights = route(x)
            keep = torch.ones_like(weights)
            keep[::3, 0] = 0  # drop the first choice of every third token
            return chosen, weights * keep

        layer.route = route_with_drops

    layer = _layer(gated=False, bias=True, weighted=True)
    x = torch.randn(30, D, generator=torch.Generator().manual_seed(5))
    _assert_same(layer, x, prepare=drop_some_pairs)
    assert [pairs for _, pairs in gathered] == [30 * 3 - 10] * 2  # forward and backward
    drop_some_pairs(layer)
    assert sum(group_by_expert(*layer.route(x), N).counts) == 30 * 3 - 10


def test_sparse_with_every_expert_is_the_dense_ffn():
    layer = _layer(gated=True, bias=True, weighted=False, top_k=N)
    x = torch.randn(20, D, generator=torch.Generator().manual_seed(6))
    chosen = torch.arange(N).repeat(20, 1)
    dense = layer.w2(layer.act(layer.w1(x)) * layer.w_up(x))
    sparse = sparse_ffn(x, group_by_expert(chosen, torch.ones(20, N), N), layer.act,
                        layer.w1.weight, layer.w1.bias, layer.w2.weight, layer.w_up.weight,
                        layer.w_up.bias) + layer.w2.bias
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("execution", ["auto", "masked", "sparse"])
@pytest.mark.parametrize("build", [tiny_bert, tiny_llama])
def test_top_k_equal_to_num_experts_is_dense_under_every_execution(build, execution):
    dense = build()
    ids = torch.randint(1, 100, (2, 12), generator=torch.Generator().manual_seed(7))
    moe = emoefy(copy.deepcopy(dense), num_experts=8, top_k=8, execution=execution)
    assert {m.execution for m in emoe_modules(moe)} == {execution}
    torch.testing.assert_close(moe(input_ids=ids).logits, dense(input_ids=ids).logits,
                               atol=1e-5, rtol=0)


def _shares(*shares: float, n: int = 64) -> torch.Tensor:
    """Each of `n` experts' share of the tokens: the given ones first, then idle experts."""
    return torch.cat([torch.tensor(shares), torch.zeros(n - len(shares))])


def test_auto_weighs_the_sparse_path_only_on_cpu_with_a_few_pairs_per_expert():
    chosen = torch.randint(0, 64, (4096, 16), generator=torch.Generator().manual_seed(13))
    assert sparse_may_pay(chosen, 64)
    assert not sparse_may_pay(chosen[:1], 64)  # 16 pairs for 64 experts
    assert not sparse_may_pay(chosen.to("meta"), 64)


def test_modelled_cost_beats_masking_where_sparse_should_run():
    uniform_16 = torch.full((64,), 16 / 64)  # BERT-base experts, k/N = 16/64
    assert sparse_cost(uniform_16, 48, training=True) < MASKED_COST
    assert sparse_cost(uniform_16, 48, training=False) < MASKED_COST
    # k = N: every expert hot, the sparse path is masking plus copies.
    assert sparse_cost(torch.ones(64), 48, training=False) >= MASKED_COST
    # A few hot experts and many idle ones: cheap, whatever k/N is.
    assert sparse_cost(_shares(*[0.9] * 20), 24, training=False) < MASKED_COST
    # Every expert just below the hot share, gathered: dearer than masking for thin experts.
    below = hot_share(24, training=False) * 0.99
    assert sparse_cost(_shares(*[below] * 64), 24, training=False) >= MASKED_COST


def test_auto_plans_the_sparse_path_only_where_it_pays(monkeypatch):
    # Layers this small never pay for the per-expert steps (next test): leave them out.
    monkeypatch.setattr("emoe_cli.engine.cost_model.EXPERT_STEPS_FLOPS", 0.0)
    layer = _layer(gated=False, bias=True, weighted=False, top_k=2, d_ff=N * 48)
    layer.execution = "auto"
    few = torch.randn(2, D, generator=torch.Generator().manual_seed(14))
    assert layer.plan_sparse(*layer.route(few)) is None  # 4 pairs for 8 experts
    many = torch.randn(400, D, generator=torch.Generator().manual_seed(15))
    chosen, weights = layer.route(many)
    assert sum(layer.plan_sparse(chosen, weights).counts) > 0
    every = torch.arange(N).repeat(400, 1)
    assert layer.plan_sparse(every, torch.ones(400, N)) is None  # all hot: masking wins
    layer.execution = "masked"
    assert layer.plan_sparse(chosen, weights) is None


def _random_layer(d: int, d_ff: int) -> EMoEFeedForward:
    """A randomly initialised d x d_ff FFN as an EMoE layer, N = 64, k = 16."""
    torch.manual_seed(0)
    ffn = DenseFFN(w1=torch.randn(d_ff, d), b1=torch.randn(d_ff), w2=torch.randn(d, d_ff),
                   b2=torch.randn(d), act=nn.GELU())
    return EMoEFeedForward(ffn, torch.arange(d_ff) % 64, 16)


def test_auto_masks_batches_too_small_to_pay_for_the_per_expert_steps():
    d, d_ff = 768, 3072  # BERT-base's FFN, N = 64, k = 16
    layer = _random_layer(d, d_ff)
    x = torch.randn(4096, d)
    with torch.no_grad():
        assert layer.plan_sparse(*layer.route(x)) is not None
        assert layer.plan_sparse(*layer.route(x[:64])) is None  # 64 tokens: masking wins
    # The same experts cost the same fixed steps; only the dense work they replace grows.
    assert fixed_cost(60, 64, d, d_ff, gated=False) == pytest.approx(
        64 * fixed_cost(60, 4096, d, d_ff, gated=False))
    assert fixed_cost(60, 64, d, d_ff, gated=True) < fixed_cost(60, 64, d, d_ff, gated=False)


def _skewed_routing(tokens: int = 4096, generator_seed: int = 16) -> torch.Tensor:
    """[tokens, 16] choices among 64 experts as real routing looks: experts 0-3 chosen by
    every token, the other 12 choices spread over experts 4-63."""
    g = torch.Generator().manual_seed(generator_seed)
    rest = torch.rand(tokens, 60, generator=g).argsort(-1)[:, :12] + 4
    return torch.cat([torch.arange(4).expand(tokens, -1), rest], 1)


def test_where_onednn_runs_half_precision_pairs_are_padded_and_gathering_costs_more(
        monkeypatch):
    """oneDNN builds a kernel for every new product shape: under bf16 autocast on such CPUs
    each expert's pairs are padded to a multiple of `ROW_MULTIPLE` (one token group, whose
    size would be a new shape too), and `auto` weighs gathering as dearer beside the faster
    products: BERT-base's FFN still runs sparse, MiniLM's narrower one masks. fp32 (and bf16
    without oneDNN) is planned as before."""
    monkeypatch.setattr("emoe_cli.engine.cost_model._onednn_runs",
                        lambda dtype: dtype == torch.bfloat16)
    chosen = _skewed_routing()
    ones = torch.ones(chosen.shape)
    bert, minilm = _random_layer(768, 3072), _random_layer(384, 1536)
    with torch.no_grad():
        for layer in (bert, minilm):
            fp32 = layer.plan_sparse(chosen, ones)
            assert fp32 is not None and any(c % ROW_MULTIPLE for c in fp32.counts)
        half = bert.plan_sparse(chosen, ones.bfloat16())
        assert half is not None and half.hot == [0, 1, 2, 3] and half.restore is None
        assert all(c % ROW_MULTIPLE == 0 for c in half.counts)
        assert minilm.plan_sparse(chosen, ones.bfloat16()) is None
        minilm.execution = "sparse"  # asked for, it runs sparse all the same
        assert minilm.plan_sparse(chosen, ones.bfloat16()) is not None


def test_padding_pairs_adds_pairs_of_token_0_and_weight_0_after_each_expert():
    chosen = torch.tensor([[0, 2], [2, 0], [0, 2]])
    weights = torch.tensor([[0.5, 0.25], [0.125, 1.0], [2.0, 4.0]])
    dispatch = group_by_expert(chosen, weights, 3, row_multiple=4)
    assert dispatch.counts == [4, 0, 4] and not dispatch.unit
    assert dispatch.token.tolist() == [0, 1, 2, 0, 0, 1, 2, 0]
    assert dispatch.weight.tolist() == [0.5, 1.0, 2.0, 0, 0.25, 0.125, 4.0, 0]


@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "softmax"])
@pytest.mark.parametrize("share", [0.3, 1.0], ids=["some-hot", "none-hot"])
def test_padded_pairs_give_the_masked_result(gated, weighted, share, monkeypatch):
    """Padding (forced here in fp32) adds pairs of weight 0: nothing changes, forward or
    backward, the router's gradient included."""
    monkeypatch.setattr("emoe_cli.engine.strategy.row_multiple", lambda dtype, device: 8)
    monkeypatch.setattr("emoe_cli.engine.strategy.hot_share",
                        lambda size, training, overhead=1.0: share)
    layer = _layer(gated, bias=True, weighted=weighted)
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(17))
    layer.execution = "sparse"
    counts = layer.plan_sparse(*layer.route(x)).counts
    assert all(c % 8 == 0 for c in counts) and sum(counts) > 0
    layer.execution = "masked"
    _assert_same(layer, x)


def test_sparse_cost_takes_each_expert_at_its_cheaper_way():
    size = 48
    hot = hot_share(size, training=False)
    assert 0.3 < hot < 0.7 and 0.3 < hot_share(size, training=True) < 0.7
    assert hot_share(24, training=False) < hot  # thin experts gather worse
    cold = sparse_cost(_shares(hot / 2), size, training=False)
    assert cold == pytest.approx(HOT_COST / 2 / 64)
    assert sparse_cost(_shares(1.0, 0.9), size, training=False) == pytest.approx(2 * HOT_COST / 64)


def test_hot_experts_are_left_out_of_the_gathered_pairs():
    chosen = torch.tensor([[0, 2], [0, 1], [0, 2], [1, 0]])  # expert 0 in every token
    dispatch = group_by_expert(chosen, torch.ones(4, 2), 3, hot_share=0.5)
    assert dispatch.hot == [0] and dispatch.counts == [0, 2, 2]
    assert dispatch.gathered == 4
    assert dispatch.gathered_experts == ([1, 2], [2, 2])  # pairs 0-1 and 2-3
    assert dispatch.token.tolist() == [1, 3, 0, 2]
    assert [(b.tokens, b.experts) for b in dispatch.blocks] == [(None, [0])]
    assert dispatch.gates.tolist() == [[1, 0, 1], [1, 1, 0], [1, 0, 1], [1, 1, 0]]
    assert group_by_expert(chosen, torch.ones(4, 2), 3).hot == []  # default: none hot


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0], ids=["all-hot", "some-hot", "none-hot"])
@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "softmax"])
def test_hot_and_gathered_experts_give_the_masked_result(share, gated, weighted, monkeypatch):
    monkeypatch.setattr("emoe_cli.engine.strategy.hot_share",
                        lambda size, training, overhead=1.0: share)
    layer = _layer(gated, bias=True, weighted=weighted)
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(10))
    hot = len(group_by_expert(*layer.route(x), N, hot_share=share).hot)
    assert {0.0: hot == N, 0.3: 0 < hot < N, 1.0: hot == 0}[share]
    _assert_same(layer, x)


@pytest.mark.parametrize("stage", [0, 1, 2], ids=["every-expert", "a-few-experts", "twice"])
@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
def test_staged_sums_give_the_masked_result_however_often_they_flush(stage, gated,
                                                                     monkeypatch):
    """The gathered experts' outputs (and input gradients) are added in batches of experts;
    batching must not change a result, whether each expert is added alone or all at once."""
    monkeypatch.setattr("emoe_cli.engine.dispatch.STAGED_ROWS_PER_TOKEN", stage)
    monkeypatch.setattr("emoe_cli.engine.strategy.hot_share",
                        lambda size, training, overhead=1.0: 1.0)
    layer = _layer(gated, bias=True, weighted=True)
    _assert_same(layer, torch.randn(40, D, generator=torch.Generator().manual_seed(11)))


def test_whole_model_matches_across_executions_in_training():
    model = emoefy(tiny_llama(), num_experts=8, top_k=2, execution="masked").train()
    sparse = copy.deepcopy(model)
    for module in emoe_modules(sparse):
        module.execution = "sparse"
    ids = torch.randint(1, 100, (2, 12), generator=torch.Generator().manual_seed(8))
    for m in (model, sparse):
        m(input_ids=ids, labels=ids).loss.backward()
    for (name, p), q in zip(model.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast_runs_both_paths_in_bf16(gathered):
    layer = _layer(gated=False, bias=True, weighted=True)
    sparse = copy.deepcopy(layer)
    sparse.execution = "sparse"
    x = torch.randn(40, D, generator=torch.Generator().manual_seed(9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = layer(x), sparse(x)
    assert want.dtype == got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=0.03, atol=0.03)
    got.float().sum().backward()
    assert sparse.w1.weight.grad.dtype == torch.float32
    assert len(gathered) == 2  # the gathered kernel ran forward and backward


def test_unknown_execution_is_named():
    with pytest.raises(ValueError, match="execution='fast' is unknown; valid: auto, masked"):
        emoefy(tiny_bert(), num_experts=8, top_k=2, execution="fast")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # bf16 scales at full width
def test_scaling_blocks_in_place_only_when_autograd_tracks_neither_input(dtype):
    """Inference scales the hidden layer in place; a trained router's weights on a frozen
    FFN still get their gradient, and the hidden layer stays untouched then."""
    from emoe_cli.engine.dispatch import scale_blocks

    h = torch.randn(4, 6, generator=torch.Generator().manual_seed(12)).to(dtype)
    scale = torch.randn(4, 3, dtype=dtype, requires_grad=True)
    kept = h.clone()
    scale_blocks(h, scale, 2).sum().backward()
    torch.testing.assert_close(scale.grad, kept.view(4, 3, 2).sum(-1))
    torch.testing.assert_close(h, kept)
    with torch.no_grad():
        out = scale_blocks(h, scale, 2)
    assert out.data_ptr() == h.data_ptr()
    torch.testing.assert_close(out, (kept.view(4, 3, 2) * scale.detach()[..., None]).view(4, 6))
