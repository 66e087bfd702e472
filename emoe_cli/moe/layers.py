"""Which transformer blocks get converted: explicit indices or a named rule."""

from __future__ import annotations

from collections.abc import Sequence

LAYER_RULES = ("all, even, odd, every_other, last_half, last_<n>, from_<start>_every_<n>, "
               "or a list of indices")


def resolve_layers(spec: str | int | Sequence[int], num_layers: int) -> list[int]:
    """Turn `moe.layers` into sorted block indices.

    Rules: `all`; `even` / `odd` (by index); `every_other` (1, 3, 5, ...: the second block
    of each pair, as GMoE does); `last_half`; `last_<n>`; `from_<start>_every_<n>` (blocks
    start, start + n, ...: the official LLaMA code's split_start_layer / split_every_layer,
    EMoE_LLaMA/moe_models.py:154). Negative indices count from the end.
    """
    if isinstance(spec, str):
        rule = spec.strip().lower()
        if rule == "all":
            return list(range(num_layers))
        if rule == "even":
            return list(range(0, num_layers, 2))
        if rule in ("odd", "every_other"):
            return list(range(1, num_layers, 2))
        if rule == "last_half":
            return list(range(num_layers // 2, num_layers))
        if rule.startswith("last_") and rule[5:].isdigit() and int(rule[5:]) >= 1:
            return list(range(max(0, num_layers - int(rule[5:])), num_layers))
        if (stride := _from_every(rule)) is not None and stride[0] < num_layers:
            return list(range(stride[0], num_layers, stride[1]))
        raise ValueError(f"moe.layers={spec!r} is not a rule; valid: {LAYER_RULES}")
    indices = [spec] if isinstance(spec, int) else list(spec)
    resolved = set()
    for index in indices:
        if not isinstance(index, int) or not -num_layers <= index < num_layers:
            raise ValueError(
                f"moe.layers entry {index!r} is out of range for a model with {num_layers} "
                f"layers (valid: 0..{num_layers - 1}, negatives from the end)"
            )
        resolved.add(index % num_layers)
    if not resolved:
        raise ValueError(f"moe.layers is empty; valid: {LAYER_RULES}")
    return sorted(resolved)


def _from_every(rule: str) -> tuple[int, int] | None:
    """(start, every) of a `from_<start>_every_<n>` rule, or None if it is not one."""
    parts = rule.split("_")
    if (len(parts) == 4 and parts[0] == "from" and parts[2] == "every"
            and parts[1].isdigit() and parts[3].isdigit() and int(parts[3]) >= 1):
        return int(parts[1]), int(parts[3])
    return None
