"""The conversion receipt: what conversion kept of the dense model, on the run's own data.

At k = N with weight 1 per expert an EMoE layer is exactly its dense FFN, so any output
difference beyond float round-off means the conversion (reading weights, permuting
neurons, installing the layer) went wrong, and training on it would waste the run. At the
chosen k the receipt also says how much of the pre-trained function survives before
fine-tuning starts (`moe/fidelity.py`): per layer the kept share of |activation| mass, and
the change of the final hidden state against dense.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from emoe_cli.moe.choices import MODES
from emoe_cli.moe.convert import emoe_modules
from emoe_cli.moe.fidelity import change_when_routed, converted_blocks, kept_shares


@contextmanager
def all_experts(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Within the block every converted layer sends each token to all experts with weight 1
    (the dense FFN); `enabled=False` forces normal routing instead. Restores on exit."""
    layers = list(emoe_modules(model))
    before = [layer.use_all_experts for layer in layers]
    for layer in layers:
        layer.use_all_experts = enabled
    try:
        yield model
    finally:
        for layer, flag in zip(layers, before):
            layer.use_all_experts = flag


def expert_mode(model: nn.Module, mode: str):
    """`emoe`: route as configured; `dense`: every expert (for `moe.train_as` / `moe.eval_as`)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is unknown; valid: {', '.join(MODES)}")
    return all_experts(model, enabled=mode == "dense")


@dataclass
class ConversionReceipt:
    """The largest output difference between the converted model at k = N and the dense one,
    and, at the chosen `top_k`, each converted layer's kept share of |activation| mass
    (`kept_share`, keyed by block index) and the final hidden state's change against dense
    (`hidden_*`, see `moe/fidelity.py`)."""

    max_abs_diff: float
    tolerance: float
    batch_size: int
    top_k: int | None = None
    kept_share: dict[str, float] | None = None
    hidden_mean_cosine: float | None = None
    hidden_worst_cosine: float | None = None
    hidden_relative_l2: float | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def probe_batch(dataset, collate: Callable, size: int) -> dict[str, torch.Tensor]:
    """The first `size` training examples, collated, without labels."""
    rows = [dataset[i] for i in range(min(size, len(dataset)))]
    batch = collate(rows)
    return {k: v for k, v in batch.items() if k not in ("labels", "label")}


@torch.no_grad()
def model_outputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's logits (or last hidden state) in eval mode, as float32 on the CPU."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        out = model(**{k: v.to(device) for k, v in batch.items()})
    finally:
        model.train(was_training)
    out = out.logits if hasattr(out, "logits") else out.last_hidden_state
    return out.float().cpu()


def conversion_receipt(model: nn.Module, batch: dict[str, torch.Tensor],
                       dense_outputs: torch.Tensor, tolerance: float,
                       dense_hidden: torch.Tensor | None = None) -> ConversionReceipt:
    """Compare the converted `model` at k = N with `dense_outputs` measured before conversion;
    with `dense_hidden` (`fidelity.pooled_hidden` before conversion) also measure what the
    chosen k keeps.

    Raises ValueError when the k = N difference exceeds `tolerance`.
    """
    with all_experts(model):
        converted = model_outputs(model, batch)
    receipt = ConversionReceipt(float((converted - dense_outputs).abs().max()), tolerance,
                                int(dense_outputs.shape[0]))
    if not receipt.max_abs_diff <= tolerance:  # also catches NaN
        raise ValueError(
            f"conversion receipt failed: the converted model at k=N differs from the dense "
            f"model by up to {receipt.max_abs_diff:.3g} on {receipt.batch_size} training "
            f"examples, above moe.receipt_tolerance={tolerance:g}; the conversion is wrong for "
            f"this model (raise the tolerance only for low-precision weights)")
    if dense_hidden is not None:
        at_k(receipt, model, batch, dense_hidden)
    return receipt


def at_k(receipt: ConversionReceipt, model: nn.Module, batch: dict[str, torch.Tensor],
         dense_hidden: torch.Tensor) -> None:
    """Fill the receipt's chosen-k fields: every converted layer routed at its own k."""
    layers = converted_blocks(model)
    receipt.top_k = next(iter(layers.values())).top_k
    receipt.kept_share = {str(i): shares[layers[i].top_k]
                          for i, shares in kept_shares(model, batch).items()}
    change = change_when_routed(model, batch, dense_hidden,
                                {i: m.top_k for i, m in layers.items()})
    receipt.hidden_mean_cosine = change["mean_cosine"]
    receipt.hidden_worst_cosine = change["worst_cosine"]
    receipt.hidden_relative_l2 = change["relative_l2"]
