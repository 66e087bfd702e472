"""Profiles: the official code's layer and training extras (`official`), or none (`clean`).

The paper's method is the clean layer (dropless, weight-1 sum, `b2` once). The authors' code
runs it inside a Tutel MoE layer that adds token dropping, a `b2` split, expert dropout,
router noise, a balancing loss and an fp32 router, and its GLUE script clips no gradients.
A `Profile` names each of these as its own switch, so that the official behaviour can be
reproduced as a whole and each ingredient removed alone. The YAML presets under
`conf/profile/` cite the official file and line of every value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Profile:
    """One set of switches; the defaults are `clean` (every extra off)."""

    name: str = "clean"
    token_dropping: bool = False  # capacity k * int(capacity_factor * ceil(T / N)) per expert
    capacity_factor: float = 1.5  # used only with token_dropping
    b2_split: bool = False  # b2 / k per kept (token, expert) pair instead of b2 once
    expert_dropout: float = 0.0  # on the pre-activations (after the activation for ViT)
    router_noise: float = 0.0  # training logits + router_noise * randn / N
    balance_loss_weight: float = 0.0  # Tutel's importance + load loss, every MoE layer
    router_fp32: bool = False  # router logits in fp32, outside autocast
    moe_output_dropout: bool = True  # GPT-2: the FFN's own output dropout inside the layer
    max_grad_norm: float | None = None  # None: the trainer's; 0: no clipping

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "clean": Profile(),
    "official": Profile(name="official", token_dropping=True, capacity_factor=1.5,
                        b2_split=True, expert_dropout=0.1, router_noise=1.0,
                        balance_loss_weight=0.01, router_fp32=True, moe_output_dropout=False,
                        max_grad_norm=0.0),
}

# The layer switches and the model families whose official code has them (the Tutel layer of
# `Language/moe_utils.py` and `Vision/domainbed/vision_transformer.py`). The LLaMA family's
# official code (`EMoE_LLaMA/moe_models.py`) is the masked layer without any of them.
TUTEL_FAMILIES = ("bert", "gpt2", "vit")
LAYER_SWITCHES = ("token_dropping", "b2_split", "expert_dropout", "router_noise",
                  "balance_loss_weight", "router_fp32")


def resolve_profile(profile: str | Profile | Mapping) -> Profile:
    """A `Profile` from a preset name, a `Profile`, or a mapping of its fields (a config)."""
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"profile={profile!r} is unknown; valid: {', '.join(PROFILES)}")
        profile = PROFILES[profile]
    elif isinstance(profile, Mapping):
        known = {f.name for f in fields(Profile)}
        unknown = sorted(set(profile) - known)
        if unknown:
            raise ValueError(f"profile.{unknown[0]} is unknown; valid: {', '.join(sorted(known))}")
        name = profile.get("name", "clean")
        if name not in PROFILES:
            raise ValueError(f"profile={name!r} is unknown; valid: {', '.join(PROFILES)}")
        profile = replace(PROFILES[name], **dict(profile))
    elif not isinstance(profile, Profile):
        raise ValueError(f"profile={profile!r} is invalid; valid: {', '.join(PROFILES)}")
    check_values(profile)
    return profile


def check_values(profile: Profile) -> None:
    """Ranges, and the one dependency between switches."""
    if not 0 <= profile.expert_dropout < 1:
        raise ValueError(f"profile.expert_dropout={profile.expert_dropout!r} is invalid; "
                         "valid: a number in [0, 1)")
    if not profile.capacity_factor > 0:
        raise ValueError(f"profile.capacity_factor={profile.capacity_factor!r} is invalid; "
                         "valid: a number > 0")
    for key in ("router_noise", "balance_loss_weight"):
        if not getattr(profile, key) >= 0:
            raise ValueError(f"profile.{key}={getattr(profile, key)!r} is invalid; valid: a "
                             "number >= 0")
    if profile.max_grad_norm is not None and not profile.max_grad_norm >= 0:
        raise ValueError(f"profile.max_grad_norm={profile.max_grad_norm!r} is invalid; valid: "
                         "a number >= 0 (0 = no clipping) or null (the trainer's)")
    if profile.balance_loss_weight > 0 and profile.router_noise <= 0:
        raise ValueError(f"profile.balance_loss_weight={profile.balance_loss_weight} needs "
                         "profile.router_noise > 0 (the official load loss divides by the "
                         "noise); valid: profile.balance_loss_weight=0 or a router_noise > 0")


def check_family(profile: Profile, family: str) -> None:
    """Refuse a layer switch on a family whose official code does not have it."""
    if family in TUTEL_FAMILIES:
        return
    for key in LAYER_SWITCHES:
        if getattr(profile, key) != getattr(PROFILES["clean"], key):
            raise ValueError(
                f"profile.{key}={getattr(profile, key)!r} does not apply to model family "
                f"{family!r} (its official code is the masked layer without extras); valid "
                f"there: profile=clean, or profile.{key}={getattr(PROFILES['clean'], key)!r}")
