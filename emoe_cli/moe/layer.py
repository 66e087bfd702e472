"""The EMoE feed-forward layer: a dense FFN whose neurons are grouped into experts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from emoe_cli.moe.dispatch import group_by_expert, sparse_ffn
from emoe_cli.moe.execution import EXECUTIONS, choose_execution
from emoe_cli.moe.routers import AvgKRouter, load_balancing_loss


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


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                      device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class EMoEFeedForward(nn.Module):
    """Dense FFN split into `num_experts` equal experts; each token uses its `top_k` best.

    Neurons are stored permuted so that every expert is a contiguous block; then EMoE is
    the dense FFN with the activations of unselected blocks zeroed. Selected experts are
    summed with weight 1 and `b2` is added once, so `top_k == num_experts` is exactly the
    dense layer. `expert_of_neuron` keeps the original neuron order. Trained routers
    (`weighted = True`) weight experts by a softmax over the selected logits and leave a
    load-balancing loss in `aux_loss` after each training forward.

    `execution` picks how the same function is computed: `masked` (the dense FFN, then
    zero the unselected blocks), `sparse` (only the selected experts, `moe/dispatch.py`) or
    `auto` (the faster of the two for the shapes at hand, `moe/execution.py`).
    """

    def __init__(self, ffn: DenseFFN, expert_of_neuron: torch.Tensor, top_k: int,
                 router: nn.Module | None = None, execution: str = "auto") -> None:
        super().__init__()
        if execution not in EXECUTIONS:
            raise ValueError(f"execution={execution!r} is unknown; valid: {', '.join(EXECUTIONS)}")
        self.execution = execution
        expert_of_neuron = expert_of_neuron.to(torch.long).cpu()
        self.num_experts = int(expert_of_neuron.max()) + 1
        self.expert_size = ffn.d_ff // self.num_experts
        if not 1 <= top_k <= self.num_experts:
            raise ValueError(f"top_k={top_k} must be between 1 and num_experts={self.num_experts}")
        self.top_k = top_k
        order = torch.argsort(expert_of_neuron, stable=True)
        self.register_buffer("expert_of_neuron", expert_of_neuron)
        self.register_buffer("neuron_order", order)
        self.w1 = _linear(ffn.w1[order], None if ffn.b1 is None else ffn.b1[order])
        self.w_up = None
        if ffn.w_up is not None:
            self.w_up = _linear(ffn.w_up[order], None if ffn.b_up is None else ffn.b_up[order])
        self.w2 = _linear(ffn.w2[:, order], ffn.b2)
        self.act = ffn.act
        self.dropout = ffn.dropout
        self.router = router or AvgKRouter(self.num_experts, ffn.w1.shape[1])
        self.weighted = getattr(self.router, "weighted", False)
        self.aux_loss: torch.Tensor | None = None
        if hasattr(self.router, "initialise"):
            self.router.initialise(self.w1.weight)
        self.refresh_router(initial=True)

    def refresh_router(self, initial: bool = False) -> None:
        """Recompute router keys from the current key rows (a no-op for trained routers)."""
        if hasattr(self.router, "refresh"):
            self.router.refresh(self.w1.weight, initial=initial)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert indices [tokens, top_k] per token and the weight of each selected expert."""
        logits = self.router(x)
        top = logits.topk(self.top_k, dim=-1)
        if not self.weighted:
            return top.indices, torch.ones_like(top.values)
        if self.training:
            self.aux_loss = load_balancing_loss(logits.float().softmax(dim=-1), top.indices)
        return top.indices, top.values.softmax(dim=-1)

    def select_experts(self, x: torch.Tensor) -> torch.Tensor:
        """Indices [tokens, top_k] of the experts each token uses."""
        return self.route(x)[0]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape
        x = hidden_states.reshape(-1, shape[-1])
        if not (self.top_k < self.num_experts or self.weighted):
            y = self.w2(self._hidden(x))  # every expert with weight 1: the dense FFN
        elif choose_execution(self.execution, x, self.top_k, self.num_experts,
                              self.expert_size) == "sparse":
            y = self._sparse(x)
        else:
            y = self._masked(x)
        if self.dropout is not None:
            y = self.dropout(y)
        return y.view(*shape[:-1], y.shape[-1])

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.w1(x))
        return h if self.w_up is None else h * self.w_up(x)

    def _masked(self, x: torch.Tensor) -> torch.Tensor:
        """The dense FFN with each token's unselected expert blocks scaled by 0."""
        h = self._hidden(x)
        chosen, weights = self.route(x)
        mask = torch.zeros(x.shape[0], self.num_experts, dtype=h.dtype, device=h.device)
        mask.scatter_(1, chosen, weights.to(h.dtype))
        h = (h.view(-1, self.num_experts, self.expert_size) * mask.unsqueeze(-1)).view_as(h)
        return self.w2(h)

    def _sparse(self, x: torch.Tensor) -> torch.Tensor:
        """Only the selected experts; under autocast everything runs in its dtype, as F.linear."""
        chosen, weights = self.route(x)
        dtype = (torch.get_autocast_dtype(x.device.type)
                 if torch.is_autocast_enabled(x.device.type) else x.dtype)

        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(dtype)

        up = (None, None) if self.w_up is None else (self.w_up.weight, self.w_up.bias)
        y = sparse_ffn(cast(x), group_by_expert(chosen, weights.to(dtype), self.num_experts),
                       self.act, cast(self.w1.weight), cast(self.w1.bias), cast(self.w2.weight),
                       cast(up[0]), cast(up[1]))
        return y if self.w2.bias is None else y + cast(self.w2.bias)

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, top_k={self.top_k}, d_ff={self.w1.out_features}"
