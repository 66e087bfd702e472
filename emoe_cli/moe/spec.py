"""`LayerSpec`: everything that says what one converted FFN computes, in one frozen record, so
that `emoefy`, the layer and `save_emoe` / `load_emoe` pass one value instead of loose
attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emoe_cli.moe.profile import Profile, resolve_profile


@dataclass(frozen=True)
class LayerSpec:
    """One EMoE layer: N experts, each token's k, the router, which experts a token gets, the
    capacity, GMoE's copies, and the official code's extras (`profile`)."""

    num_experts: int
    top_k: int
    gate: str = "avg_k"  # the router's name (`moe/routers.py`)
    gate_options: Mapping[str, Any] = field(default_factory=dict)  # its keyword arguments
    selection: str = "top"  # or "other" / "bottom": the which-experts ablation
    select: str = "gate"  # what scores experts: the router, or see `activation_scores`
    capacity_factor: float | None = None  # None: dropless
    expert_repeat: int = 1  # copies of each expert (GMoE); all-experts weights are 1/copies
    profile: Profile = Profile()  # clean: none of the official code's extras


def spec_from_saved(entry: Mapping[str, Any]) -> LayerSpec:
    """The spec of a layer as `save_emoe` wrote it in `emoe.json`; keys that older files lack
    take the defaults they had then."""
    defaults = LayerSpec(num_experts=entry["num_experts"], top_k=entry["top_k"])
    return LayerSpec(
        num_experts=entry["num_experts"], top_k=entry["top_k"], gate=entry["gate"],
        gate_options=dict(entry["gate_options"]),
        selection=entry.get("selection", defaults.selection),
        select=entry.get("select", defaults.select),
        capacity_factor=entry.get("capacity_factor", defaults.capacity_factor),
        expert_repeat=entry.get("expert_repeat", defaults.expert_repeat),
        profile=resolve_profile(entry.get("profile", "clean")))


def saved_entry(spec: LayerSpec) -> dict[str, Any]:
    """The spec's keys in `emoe.json`, as `spec_from_saved` reads them back."""
    return {"num_experts": spec.num_experts, "top_k": spec.top_k,
            "expert_repeat": spec.expert_repeat, "gate": spec.gate,
            "gate_options": dict(spec.gate_options), "selection": spec.selection,
            "select": spec.select, "capacity_factor": spec.capacity_factor,
            "profile": spec.profile.to_dict()}
