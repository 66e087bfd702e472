"""How much of the dense model a conversion keeps at its k, measured on real inputs.

Two numbers, both taken before any fine-tuning:

- **kept share** of a converted layer: of its FFN activation mass, the sum over real tokens
  and intermediate units of |act(W1 x + b1)| (times the up projection in gated FFNs), the
  part that lies in the experts each token is routed to. The layer's inputs are those of
  the dense model (every converted layer at k = N), so a layer's share does not depend on
  which other layers are converted. 1 at k = N; the paper's premise is that it stays high
  for small k because a token's activation concentrates in few clustered experts.
- **hidden change** of the whole model: its final hidden state (the last entry of
  `hidden_states`, averaged over real tokens) against the dense model's, per example: the
  cosine (mean and worst over the batch) and the relative L2 distance ‖h − h_dense‖ /
  ‖h_dense‖ (mean over the batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from emoe_cli.moe.adapters import adapter_for
from emoe_cli.moe.layer import EMoEFeedForward


def converted_blocks(model: nn.Module) -> dict[int, EMoEFeedForward]:
    """Each converted FFN by the index of the transformer block that holds it."""
    blocks = adapter_for(model).blocks(model)
    return {index: module for index, block in enumerate(blocks)
            for module in block.modules() if isinstance(module, EMoEFeedForward)}


def token_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Real (non-padding) tokens, flattened [batch · length], or None when all count."""
    mask = batch.get("attention_mask")
    return None if mask is None else mask.reshape(-1).bool()


@contextmanager
def routing(layers: dict[int, EMoEFeedForward], routed: dict[int, int]) -> Iterator[None]:
    """Layers in `routed` (index → k) route to their k best experts; the others use every
    expert with weight 1 (the dense FFN). Restores each layer's k and mode on exit."""
    before = {i: (m.top_k, m.use_all_experts) for i, m in layers.items()}
    for index, module in layers.items():
        module.use_all_experts = index not in routed
        module.top_k = routed.get(index, module.top_k)
    try:
        yield
    finally:
        for index, module in layers.items():
            module.top_k, module.use_all_experts = before[index]


def _eval_forward(model: nn.Module, batch: dict[str, torch.Tensor]):
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            return model(**{k: v.to(device) for k, v in batch.items()}, output_hidden_states=True)
    finally:
        model.train(was_training)


def dense_layer_inputs(model: nn.Module, batch: dict[str, torch.Tensor]
                       ) -> dict[int, torch.Tensor]:
    """Each converted layer's input [tokens, d] in the dense model (every layer at k = N)."""
    layers = converted_blocks(model)
    inputs: dict[int, torch.Tensor] = {}

    def keep(index: int):
        def hook(module, args):
            inputs[index] = args[0].detach().reshape(-1, args[0].shape[-1])
        return hook

    handles = [m.register_forward_pre_hook(keep(i)) for i, m in layers.items()]
    try:
        with routing(layers, {}):
            _eval_forward(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    return inputs


@torch.no_grad()
def expert_mass(layer: EMoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    """Sum of |activation| over each expert's units, [tokens, N] (experts are contiguous)."""
    hidden = layer._hidden(x).float().abs()
    return hidden.view(x.shape[0], layer.num_experts, -1).sum(dim=-1)


@torch.no_grad()
def kept_share(layer: EMoEFeedForward, x: torch.Tensor, top_k: int,
               mask: torch.Tensor | None = None) -> float:
    """The share of the layer's activation mass on `x` in the experts routed to at `top_k`.

    Routing runs on every token (capacity limits count them all, as in the forward pass);
    pairs a capacity limit drops count as not kept; `mask` picks the tokens that are summed.
    """
    was_training = layer.training
    layer.eval()
    try:
        with routing({0: layer}, {0: top_k}):
            chosen, weights = layer.route(x)
    finally:
        layer.train(was_training)
    mass = expert_mass(layer, x)
    kept = (mass.gather(1, chosen) * (weights != 0)).sum(dim=-1)
    total = mass.sum(dim=-1)
    if mask is not None and mask.numel() == mass.shape[0]:
        mask = mask.to(mass.device)
        kept, total = kept[mask], total[mask]
    return float(kept.sum() / total.sum()) if float(total.sum()) > 0 else 1.0


def kept_shares(model: nn.Module, batch: dict[str, torch.Tensor],
                top_ks: list[int] | None = None) -> dict[int, dict[int, float]]:
    """`{layer: {k: kept share}}` for every converted layer; `top_ks` None: each layer's k."""
    layers = converted_blocks(model)
    inputs = dense_layer_inputs(model, batch)
    mask = token_mask(batch)
    return {index: {k: kept_share(layer, inputs[index], k, mask)
                    for k in (top_ks or [layer.top_k])}
            for index, layer in layers.items()}


def pooled_hidden(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The last hidden state averaged over real tokens, [batch, d], float32 on the CPU."""
    hidden = _eval_forward(model, batch).hidden_states[-1].float().cpu()
    mask = batch.get("attention_mask")
    if mask is None or mask.shape != hidden.shape[:2]:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def hidden_change(converted: torch.Tensor, dense: torch.Tensor) -> dict[str, float]:
    """Mean and worst cosine and mean relative L2 distance between pooled hidden states."""
    cosine = F.cosine_similarity(converted, dense, dim=-1)
    relative = (converted - dense).norm(dim=-1) / dense.norm(dim=-1).clamp(min=1e-12)
    return {"mean_cosine": float(cosine.mean()), "worst_cosine": float(cosine.min()),
            "relative_l2": float(relative.mean())}


def change_when_routed(model: nn.Module, batch: dict[str, torch.Tensor], dense: torch.Tensor,
                       routed: dict[int, int]) -> dict[str, float]:
    """`hidden_change` with only the layers in `routed` (index → k) routing; the other
    converted layers compute their dense FFN."""
    with routing(converted_blocks(model), routed):
        return hidden_change(pooled_hidden(model, batch), dense)
