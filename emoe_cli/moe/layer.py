"""The EMoE feed-forward layer: a dense FFN whose neurons are grouped into experts."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from emoe_cli.engine.dispatch import Dispatch, expert_activation, scale_blocks
from emoe_cli.engine.strategy import Execution, compute_dtype, execution_for
from emoe_cli.moe.routers import (
    AvgKRouter,
    Router,
    activation_scores,
    drop_over_capacity,
    importance_load_loss,
    keep_by_priority,
    load_balancing_loss,
    pick_experts,
)
from emoe_cli.moe.spec import LayerSpec
from emoe_cli.moe.weights import effective_weight


@dataclass
class DenseFFN:
    """A model family's FFN in one canonical layout: `y = w2 · act(w1 x + b1) [⊙ w_up x] + b2`.

    `w1` is [d_ff, d] (its rows are the keys), `w2` is [d, d_ff]. `w_up` is set for gated
    (SwiGLU) FFNs, where `w1` is the gate projection.
    """

    w1: torch.Tensor
    b1: torch.Tensor | None
    w2: torch.Tensor
    b2: torch.Tensor | None
    act: nn.Module
    dropout: nn.Module | None = None
    w_up: torch.Tensor | None = None
    b_up: torch.Tensor | None = None

    @property
    def d_ff(self) -> int:
        return self.w1.shape[0]


def _out_of_place(act: nn.Module) -> nn.Module:
    """`act`, computing into a new tensor: an in-place activation (`inplace=True`, as
    `nn.ReLU` and `nn.SiLU` offer) would overwrite the pre-activations that the sparse path
    keeps for its backward pass."""
    if getattr(act, "inplace", False):
        act = copy.copy(act)
        act.inplace = False
    return act


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                      device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def selected_weights(probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """A trained router's weights, as Tutel computes them (`tutel/tutel/impls/fast_dispatch.py`,
    lines 148 and 170-172): each chosen expert's softmax probability over all experts,
    renormalised to sum 1 when a token has several; a single expert keeps its probability."""
    weights = probs.gather(1, chosen)
    if chosen.shape[1] > 1:
        total = weights.sum(dim=-1, keepdim=True)
        weights = weights / total.clamp(min=torch.finfo(probs.dtype).eps)
    return weights


class EMoEFeedForward(nn.Module):
    """Dense FFN split into `num_experts` equal experts; each token uses its `top_k` best.

    Neurons are stored permuted so that every expert is a contiguous block; then EMoE is
    the dense FFN with the activations of unselected blocks zeroed. Selected experts are
    summed with weight 1 and `b2` is added once, so `top_k == num_experts` is exactly the
    dense layer. `expert_of_neuron` keeps the original neuron order. Trained routers
    (`weighted = True`) weight experts by their softmax probability (`selected_weights`) and leave a
    load-balancing loss in `aux_loss` after each training forward.

    `profile` (`moe/profile.py`) adds the official code's extras: token dropping by
    priority, `b2 / k` per kept pair, expert dropout (before the activation unless
    `dropout_before` is False), router noise, Tutel's balancing loss, an fp32 router.

    `execution` picks the engine strategy that computes the same function
    (`engine/strategy.py`): `masked` (the dense FFN, then zero the unselected blocks),
    `sparse` (only the selected experts) or `auto` (the faster of the two for the shapes at
    hand).
    """

    def __init__(self, ffn: DenseFFN, expert_of_neuron: torch.Tensor, top_k: int | None = None,
                 router: Router | None = None, execution: str = "auto", *,
                 spec: LayerSpec | None = None, dropout_before: bool = True) -> None:
        super().__init__()
        self.execution = execution
        expert_of_neuron = expert_of_neuron.to(torch.long).cpu()
        self.num_experts = int(expert_of_neuron.max()) + 1
        self.expert_size = ffn.d_ff // self.num_experts
        if spec is None and top_k is None:
            raise ValueError("EMoEFeedForward needs top_k or a spec; valid: either")
        spec = spec or LayerSpec(num_experts=self.num_experts, top_k=top_k)
        if top_k is not None and top_k != spec.top_k:
            raise ValueError(f"top_k={top_k} differs from the spec's top_k={spec.top_k}; valid: "
                             "one of the two, or both equal")
        if not 1 <= spec.top_k <= self.num_experts:
            raise ValueError(f"top_k={spec.top_k} must be between 1 and "
                             f"num_experts={self.num_experts}")
        self.spec = spec
        self.top_k = spec.top_k  # `fidelity.routing` varies it for a measurement
        self.dropout_before = dropout_before  # expert dropout before the activation (ViT: after)
        order = torch.argsort(expert_of_neuron, stable=True)
        self.register_buffer("expert_of_neuron", expert_of_neuron)
        self.register_buffer("neuron_order", order)
        self.w1 = _linear(ffn.w1[order], None if ffn.b1 is None else ffn.b1[order])
        self.w_up = None
        if ffn.w_up is not None:
            self.w_up = _linear(ffn.w_up[order], None if ffn.b_up is None else ffn.b_up[order])
        self.w2 = _linear(ffn.w2[:, order], ffn.b2)
        self.act = _out_of_place(ffn.act)
        self.dropout = ffn.dropout
        self.router: Router = router or AvgKRouter(self.num_experts, ffn.w1.shape[1])
        self.weighted = self.router.weighted
        self.aux_loss: torch.Tensor | None = None
        self.use_all_experts = False  # set by `receipt.all_experts`: every token, every expert
        self.router.initialise(self.w1.weight)
        self.refresh_router(initial=True)

    # The spec's settings, read where the layer's code and its users name them.
    gate = property(lambda self: self.spec.gate)
    gate_options = property(lambda self: self.spec.gate_options)
    expert_repeat = property(lambda self: self.spec.expert_repeat)
    selection = property(lambda self: self.spec.selection)
    select = property(lambda self: self.spec.select)
    capacity_factor = property(lambda self: self.spec.capacity_factor)
    profile = property(lambda self: self.spec.profile)

    def refresh_router(self, initial: bool = False) -> None:
        """Recompute router keys from the current key rows (a no-op for trained routers).

        Under LoRA the key rows are the merged `base + B A` (see `effective_weight`).
        """
        self.router.refresh(effective_weight(self.w1), initial=initial)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert indices [tokens, top_k] per token and the weight of each selected expert."""
        if self.use_all_experts:
            every = torch.arange(self.num_experts, device=x.device).expand(x.shape[0], -1)
            return every, torch.full(every.shape, 1.0 / self.expert_repeat, dtype=x.dtype,
                                     device=x.device)
        profile = self.profile
        logits = self._logits(x)
        noisy = logits
        if self.training and profile.router_noise > 0:  # selection sees the noisy scores
            noisy = logits + profile.router_noise * torch.randn_like(logits) / self.num_experts
        chosen, scores = pick_experts(noisy, self.top_k, self.selection)
        if self.weighted:  # Tutel weighs by the softmax of the scores it selected on
            weights = selected_weights(noisy.float().softmax(dim=-1), chosen).to(scores.dtype)
        else:
            weights = torch.ones_like(scores)
        if self.training and profile.balance_loss_weight > 0:
            self.aux_loss = importance_load_loss(logits, noisy, chosen, profile.router_noise)
        elif self.training and self.weighted:
            self.aux_loss = load_balancing_loss(logits.float().softmax(dim=-1), chosen)
        if profile.token_dropping:  # dropped pairs keep weight 0
            priority = noisy.float().softmax(dim=-1).amax(dim=-1)
            weights = weights * keep_by_priority(chosen, priority, self.num_experts,
                                                 profile.capacity_factor)
        elif self.capacity_factor is not None:
            weights = drop_over_capacity(chosen, weights, self.num_experts, self.capacity_factor)
        return chosen, weights

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Router scores [tokens, N]; in fp32 outside autocast under `profile.router_fp32`."""
        if self.select != "gate":
            return activation_scores(self, x, self.select)
        if not self.profile.router_fp32:
            return self.router(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.router(x.float())

    def select_experts(self, x: torch.Tensor) -> torch.Tensor:
        """Indices [tokens, top_k] of the experts each token uses."""
        return self.route(x)[0]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])
        if not (self.top_k < self.num_experts or self.weighted or self.capacity_factor):
            # Every expert with weight 1: the dense FFN. Official token dropping never binds
            # here (capacity >= every token) and b2 / N over N experts is b2.
            if self.training and self.profile.balance_loss_weight > 0:
                self.route(x)  # leaves the balancing loss
            y = self.w2(self._hidden(x))
        else:
            chosen, weights = self.route(x)
            # b2 / k per kept pair (official): b2 scaled by each token's kept weight over k.
            share = (weights.sum(dim=-1, keepdim=True) / self.top_k
                     if self.profile.b2_split and not self.use_all_experts else None)
            y = self.experts(x, chosen, weights)
            b2 = getattr(self.w2, "base_layer", self.w2).bias  # LoRA wraps w2 in a base_layer
            if share is not None and b2 is not None:  # from b2 once to b2 * share
                y = y + (share.to(y.dtype) - 1) * b2.to(y.dtype)
        if self.dropout is not None:
            y = self.dropout(y)
        return y.view(*shape[:-1], y.shape[-1])

    @property
    def execution(self) -> str:
        """How the layer computes (`masked`, `sparse`, `auto`): the name of its engine
        strategy (`engine/strategy.py`)."""
        return self.engine.name

    @execution.setter
    def execution(self, name: str) -> None:
        self.engine: Execution = execution_for(name)

    def experts(self, x: torch.Tensor, chosen: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
        """Each token's selected experts, weighted and summed (`b2` once): by the engine where
        it takes the call, else masked."""
        plan = self.plan_sparse(chosen, weights.to(compute_dtype(x)))
        return self._masked(x, chosen, weights) if plan is None else self.engine.run(self, x, plan)

    def plan_sparse(self, chosen: torch.Tensor, weights: torch.Tensor) -> Dispatch | None:
        """The engine's plan for this routing, or None when the layer masks. `weights` are in
        the dtype the layer computes in."""
        return self.engine.plan(self, chosen, weights)

    @property
    def expert_dropout(self) -> float:
        """The official expert dropout rate now in effect (0 in evaluation)."""
        return self.profile.expert_dropout if self.training else 0.0

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = expert_activation(self.w1(x), self.act, self.expert_dropout, self.dropout_before)
        return h if self.w_up is None else h * self.w_up(x)

    def _masked(self, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The dense FFN with each token's unselected expert blocks scaled by 0."""
        h = self._hidden(x)
        mask = torch.zeros(x.shape[0], self.num_experts, dtype=h.dtype, device=h.device)
        mask.scatter_(1, chosen, weights.to(h.dtype))
        return self.w2(scale_blocks(h, mask, self.expert_size))

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, top_k={self.top_k}, d_ff={self.w1.out_features}"
