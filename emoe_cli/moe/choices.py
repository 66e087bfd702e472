"""The method's named choices and the checks on them, without torch: the CLI checks a config
with these before any model code loads, and the torch modules import them from here."""

from __future__ import annotations

SELECTIONS = ("top", "other", "bottom")  # moe.selection: which experts a token gets
SELECTS = ("gate", "up", "inter", "gate_abs", "up_abs", "inter_abs")  # moe.select (avg_k)
MODES = ("emoe", "dense")  # moe.train_as / moe.eval_as
SPLITS = ("cluster", "random")  # moe.split


def check_routing(gate: str, select: str, capacity_factor: float | None) -> None:
    """ValueError for a `select` the gate cannot use or a capacity that is not positive."""
    if select not in SELECTS:
        raise ValueError(f"select={select!r} is unknown; valid: {', '.join(SELECTS)}")
    if select != "gate" and gate != "avg_k":
        raise ValueError(f"select={select!r} scores experts without a router, so it needs "
                         f"gate='avg_k' (got {gate!r}); valid with {gate!r}: gate")
    if capacity_factor is not None and not capacity_factor > 0:
        raise ValueError(f"capacity_factor={capacity_factor!r} is invalid; valid: a number > 0 "
                         "or null (dropless)")
