"""Routers: score every expert for every token."""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from emoe_cli.moe.choices import SELECTIONS


class Router(Protocol):
    """What a layer asks of its router: scores [tokens, N] for tokens [tokens, d], a start
    from the layer's key rows, and keys that follow them after each optimiser step."""

    name: str  # gate.name, the key of its options' schema (emoe_cli/config/schema.py GATE_SCHEMAS)
    weighted: bool  # True: selected experts weighted by the softmax of their scores (trained)
    noise: float  # the router's own training noise (0: none)

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def initialise(self, key_rows: torch.Tensor) -> None:
        """Start from the key rows ([d_ff, d], experts contiguous) once, when built."""
        ...

    def refresh(self, key_rows: torch.Tensor, initial: bool = False) -> None:
        """Follow the current key rows (after each optimiser step)."""
        ...


class AvgKRouter(nn.Module):
    """EMoE's avg-k gate: expert e scores a token by `x · mean(key rows of e)`.

    The keys are a buffer, not a parameter: the optimiser never touches them; `refresh`
    recomputes them from the current FFN keys after each optimiser step, so routing
    follows the fine-tuned weights without adding parameters.
    """

    name = "avg_k"

    weighted = False
    noise = 0.0

    def __init__(self, num_experts: int, hidden_size: int, momentum: float = 0.0,
                 normalize: bool = False) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.momentum = momentum
        self.normalize = normalize
        self.register_buffer("keys", torch.zeros(num_experts, hidden_size))

    def initialise(self, key_rows: torch.Tensor) -> None:
        """Nothing: `refresh(initial=True)` sets the keys."""

    @torch.no_grad()
    def refresh(self, key_rows: torch.Tensor, initial: bool = False) -> None:
        """Recompute expert keys from `key_rows` ([d_ff, d], experts contiguous)."""
        keys = key_rows.detach().reshape(self.num_experts, -1, key_rows.shape[-1]).mean(dim=1)
        if self.normalize:
            keys = F.normalize(keys, dim=-1)
        keys = keys.to(self.keys.dtype)
        if initial or self.momentum == 0.0:
            self.keys.copy_(keys)
        else:
            self.keys.mul_(self.momentum).add_(keys, alpha=1.0 - self.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.keys.to(x.dtype).t()




class LearnedRouter(nn.Module):
    """EMoE-learn: a trained linear router, initialised from the expert keys or at random.

    Selected experts are weighted by a softmax over their logits, and the layer adds a
    load-balancing loss, since a trained router can otherwise collapse onto few experts.
    """

    name = "learned"

    weighted = True

    def __init__(self, num_experts: int, hidden_size: int, init: str = "keys",
                 noise: float = 0.0) -> None:
        super().__init__()
        if init not in ("keys", "random"):
            raise ValueError(f"gate.init={init!r} is unknown; valid: keys, random")
        self.init, self.noise = init, noise
        self.weight = nn.Parameter(torch.empty(num_experts, hidden_size))

    @torch.no_grad()
    def initialise(self, key_rows: torch.Tensor) -> None:
        """Start from the avg-k keys (`init=keys`) or a small random matrix."""
        if self.init == "keys":
            self.weight.copy_(key_rows.reshape(self.weight.shape[0], -1, key_rows.shape[-1])
                              .mean(dim=1))
        else:
            nn.init.normal_(self.weight, std=0.02)

    def refresh(self, key_rows: torch.Tensor, initial: bool = False) -> None:
        """Nothing: a trained router follows its own gradient, not the keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x @ self.weight.to(x.dtype).t()
        if self.training and self.noise > 0:  # the original's exploration noise
            logits = logits + torch.randn_like(logits) * self.noise
        return logits


class CosineRouter(LearnedRouter):
    """GMoE's router, as the official Tutel gate builds it (`tutel/tutel/gates/cosine_top.py`,
    lines 8-34): cosine similarity between a linear projection (with bias) of the token and
    learned expert embeddings (initialised N(0, 0.01)), divided by a learned temperature that
    starts at `temperature` (the gate's `init_t`, 0.5) and never falls below 0.01."""

    name = "cosine"

    def __init__(self, num_experts: int, hidden_size: int, proj_dim: int = 256,
                 temperature: float = 0.5, noise: float = 0.0) -> None:
        super().__init__(num_experts, hidden_size, init="random", noise=noise)
        self.proj = nn.Linear(hidden_size, proj_dim)
        self.weight = nn.Parameter(torch.empty(num_experts, proj_dim))
        self.log_temperature = nn.Parameter(torch.tensor(float(temperature)).log())

    @torch.no_grad()
    def initialise(self, key_rows: torch.Tensor) -> None:
        """Expert embeddings at random, whatever the keys: the cosine gate never starts from
        them (`Language/moe_utils.py`, lines 177-184)."""
        nn.init.normal_(self.weight, mean=0.0, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = F.normalize(self.proj(x), dim=-1)
        experts = F.normalize(self.weight.to(x.dtype), dim=-1)
        temperature = self.log_temperature.exp().clamp(min=0.01)
        logits = tokens @ experts.t() / temperature
        if self.training and self.noise > 0:
            logits = logits + torch.randn_like(logits) * self.noise
        return logits


def pick_experts(logits: torch.Tensor, top_k: int,
                 selection: str = "top") -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and logits of the experts each token gets: its `top_k` best (EMoE), the
    `N - top_k` others, or its `top_k` worst (the paper's which-experts ablation)."""
    if selection == "top":
        picked = logits.topk(top_k, dim=-1)
    elif selection == "other":  # everything outside the top-k = the bottom N - k
        picked = logits.topk(logits.shape[-1] - top_k, dim=-1, largest=False)
    elif selection == "bottom":
        picked = logits.topk(top_k, dim=-1, largest=False)
    else:
        raise ValueError(f"selection={selection!r} is unknown; valid: {', '.join(SELECTIONS)}")
    return picked.indices, picked.values


def activation_scores(layer: nn.Module, x: torch.Tensor, select: str) -> torch.Tensor:
    """Expert scores [tokens, N] as the mean, over each expert's neurons, of the gate (W1)
    or up projection, or of the intermediate activation, optionally of their absolute
    values: the `select` options of the original gated-FFN (LLaMA) code. `gate` without
    `_abs` equals the avg-k router (up to W1's bias)."""
    projection, _, absolute = select.partition("_")
    if projection == "gate":
        values = layer.w1(x)
    elif projection == "up":
        if layer.w_up is None:
            raise ValueError(f"select={select!r} needs a gated FFN (LLaMA family) with an up "
                             "projection; valid here: gate, inter, gate_abs, inter_abs")
        values = layer.w_up(x)
    else:
        values = layer.act(layer.w1(x))
        if layer.w_up is not None:
            values = values * layer.w_up(x)
    if absolute:
        values = values.abs()
    return values.view(x.shape[0], layer.num_experts, -1).mean(dim=-1)


def drop_over_capacity(chosen: torch.Tensor, weights: torch.Tensor, num_experts: int,
                       capacity_factor: float) -> torch.Tensor:
    """Zero the weights of (token, expert) pairs beyond each expert's capacity.

    Capacity is ceil(factor · tokens · k / N). As in GShard/Tutel, every token's first
    choice is served before any second choice, and within a choice earlier tokens first.
    """
    tokens, k = chosen.shape
    capacity = math.ceil(capacity_factor * tokens * k / num_experts)
    one_hot = F.one_hot(chosen.t().reshape(-1), num_experts)  # [k * tokens, N], choice-major
    position = (one_hot.cumsum(dim=0) * one_hot).sum(dim=-1)  # 1-based place in its expert
    keep = (position <= capacity).view(k, tokens).t()
    return weights * keep.to(weights.dtype)


def keep_by_priority(chosen: torch.Tensor, priority: torch.Tensor, num_experts: int,
                     capacity_factor: float) -> torch.Tensor:
    """Which (token, expert) pairs of `chosen` ([tokens, k], best choice first) fit their
    expert's capacity, as the official Tutel layer decides it: [tokens, k] booleans.

    Capacity is `k * int(capacity_factor * ceil(tokens / N))`. Slots are filled rank by rank
    (every token's first choice, then every second choice, ...); within a rank, tokens with
    a higher `priority` (Tutel: their largest routing probability) go first. A dropped pair
    still takes its place in the count, as in Tutel, where later ranks start after all
    earlier-rank selections of the expert.
    """
    tokens, k = chosen.shape
    capacity = k * int(capacity_factor * math.ceil(tokens / num_experts))
    order = torch.argsort(priority, descending=True, stable=True)
    count = tokens * k
    dtype = torch.int32 if num_experts * count < 2**31 else torch.long
    expert = chosen[order].t().reshape(-1).to(dtype)  # rank-major, by priority within a rank
    pairs = torch.arange(count, dtype=dtype, device=expert.device)
    # Sorted by (expert, place in that order): unique 32-bit keys sort several times faster
    # than a stable sort of the experts alone.
    by_expert = torch.argsort(expert * count + pairs)
    counts = torch.bincount(expert, minlength=num_experts)
    starts = (torch.cumsum(counts, 0) - counts).to(dtype)
    position = torch.empty_like(expert)
    position[by_expert] = pairs - starts[expert[by_expert]]
    keep = torch.empty_like(chosen, dtype=torch.bool)
    keep[order] = (position < capacity).view(k, tokens).t()
    return keep


def importance_load_loss(logits: torch.Tensor, noisy: torch.Tensor, chosen: torch.Tensor,
                         noise: float) -> torch.Tensor:
    """The official balancing loss (Tutel's `load_importance_loss`): the mean of the squared
    coefficients of variation of each expert's importance (summed noise-free probabilities)
    and of its smooth load.

    The load is `sum_t Phi((p_te - threshold_t) / (noise / N))`, where the threshold is the
    token's k-th largest *noisy logit* while `p` are noise-free *probabilities*: the official
    code compares the two scales, and so does this.
    """
    num_experts = logits.shape[-1]
    probs = logits.float().softmax(dim=-1)
    threshold = noisy.gather(1, chosen[:, -1:]).float()
    scale = noise / num_experts
    load = (0.5 * (1 + torch.erf((probs - threshold) / (scale * math.sqrt(2))))).sum(0)

    def cv_squared(values: torch.Tensor) -> torch.Tensor:
        return values.var() / (values.mean() ** 2 + 1e-10)

    return (cv_squared(probs.sum(0)) + cv_squared(load)) / 2


def load_balancing_loss(probs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Switch-style balance loss: N · Σ_e (share of selections to e) · (mean prob of e).

    Equals 1 when routing is uniform and grows as it concentrates.
    """
    num_experts = probs.shape[-1]
    counts = torch.zeros(num_experts, device=probs.device, dtype=probs.dtype)
    counts.scatter_add_(0, chosen.reshape(-1), torch.ones_like(chosen, dtype=probs.dtype)
                        .reshape(-1))
    share = counts / chosen.numel()
    return num_experts * (share * probs.mean(dim=0)).sum()


# gate.name -> router. The CLI knows the gates without torch from their option schemas
# (emoe_cli/config/schema.py GATE_SCHEMAS); tests/moe/test_routers.py checks the two agree.
ROUTERS = {router.name: router for router in (AvgKRouter, LearnedRouter, CosineRouter)}
