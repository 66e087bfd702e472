"""What a run costs: FFN parameters a token actually uses, and seconds per training step.

Recorded next to the accuracy so reports can put cost columns beside it. EMoE adds no
parameters, but a token only uses the k of N experts it is routed to (plus the output
bias and the router), so its active FFN parameters shrink by about k/N in converted layers.
"""

from __future__ import annotations

import logging

from torch import nn

from emoe_cli.moe.adapters import adapter_for
from emoe_cli.moe.layer import EMoEFeedForward

log = logging.getLogger("emoe")


def _numel(*tensors) -> int:
    return sum(t.numel() for t in tensors if t is not None)


def _moe_counts(moe: EMoEFeedForward) -> tuple[int, float]:
    """(all parameters, parameters one token uses) of a converted FFN.

    The avg-k router's keys are means of W1 rows, not parameters, so only trained routers add.
    """
    experts = _numel(moe.w1.weight, moe.w1.bias, moe.w2.weight)
    if moe.w_up is not None:
        experts += _numel(moe.w_up.weight, moe.w_up.bias)
    shared = _numel(moe.w2.bias) + sum(p.numel() for p in moe.router.parameters())
    return experts + shared, experts * moe.top_k / moe.num_experts + shared


def ffn_parameters(model: nn.Module) -> dict[str, float] | None:
    """Total and per-token active FFN parameters over all blocks, or None if not countable.

    Counting is best effort: a family without an adapter (or a wrapped model) is logged and
    recorded as None rather than failing the run.
    """
    try:
        adapter = adapter_for(model)
        total = active = 0.0
        for block in adapter.blocks(model):
            moe = next((m for m in block.modules() if isinstance(m, EMoEFeedForward)), None)
            if moe is None:
                ffn = adapter.read(block)
                count = _numel(ffn.w1, ffn.b1, ffn.w2, ffn.b2, ffn.w_up, ffn.b_up)
                total, active = total + count, active + count
            else:
                all_params, used = _moe_counts(moe)
                total, active = total + all_params, active + used
    except (ValueError, AttributeError) as error:
        log.warning("FFN parameters not counted: %s", error)
        return None
    return {"total": int(total), "active_per_token": active}


def seconds_per_step(train_seconds: float, epochs: list[dict]) -> float | None:
    """Mean wall time of one optimiser step (training only, evaluation excluded)."""
    steps = epochs[-1]["step"] if epochs else 0
    return train_seconds / steps if steps else None
