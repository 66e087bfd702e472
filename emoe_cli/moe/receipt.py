"""The conversion receipt: proof, on the run's own data, that conversion kept the dense model.

At k = N with weight 1 per expert an EMoE layer is exactly its dense FFN, so any output
difference beyond float round-off means the conversion (reading weights, permuting
neurons, installing the layer) went wrong, and training on it would waste the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from emoe_cli.moe.convert import emoe_modules

MODES = ("emoe", "dense")


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
    """The largest output difference between the converted model at k = N and the dense one."""

    max_abs_diff: float
    tolerance: float
    batch_size: int

    def to_dict(self) -> dict:
        return asdict(self)


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
                       dense_outputs: torch.Tensor, tolerance: float) -> ConversionReceipt:
    """Compare the converted `model` at k = N with `dense_outputs` measured before conversion.

    Raises ValueError when the difference exceeds `tolerance`.
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
    return receipt
