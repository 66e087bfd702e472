"""Routers: score every expert for every token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AvgKRouter(nn.Module):
    """EMoE's avg-k gate: expert e scores a token by `x · mean(key rows of e)`.

    The keys are a buffer, not a parameter: the optimiser never touches them; `refresh`
    recomputes them from the current FFN keys after each optimiser step, so routing
    follows the fine-tuned weights without adding parameters.
    """

    def __init__(self, num_experts: int, hidden_size: int, momentum: float = 0.0,
                 normalize: bool = False) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.momentum = momentum
        self.normalize = normalize
        self.register_buffer("keys", torch.zeros(num_experts, hidden_size))

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


ROUTERS = {"avg_k": AvgKRouter}
