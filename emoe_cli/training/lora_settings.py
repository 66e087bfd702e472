"""The `lora` group's switch, its name in records and its checks, without torch or peft: the
CLI checks a config with these before any model code loads (`lora.py` applies the adapters)."""

from __future__ import annotations

from omegaconf import DictConfig

from emoe_cli.errors import UserError
from emoe_cli.naming import lora_enabled, lora_method  # noqa: F401 (importable from here too)

LORA_MODES = ("standard", "moe_layers", "emoe")


def validate_lora(cfg: DictConfig) -> None:
    """One-line errors for bad `lora.*` values and modes that do not fit the `moe` choice."""
    if not lora_enabled(cfg):
        return
    lora = cfg.lora
    if lora.mode not in LORA_MODES:
        raise UserError(f"lora.mode={lora.mode!r} is unknown; valid: {', '.join(LORA_MODES)}")
    if not (isinstance(lora.r, int) and not isinstance(lora.r, bool) and lora.r >= 1):
        raise UserError(f"lora.r={lora.r!r} is invalid; valid: a positive integer")
    if not (isinstance(lora.alpha, (int, float)) and lora.alpha > 0):
        raise UserError(f"lora.alpha={lora.alpha!r} is invalid; valid: a positive number")
    if not (isinstance(lora.dropout, (int, float)) and 0 <= lora.dropout < 1):
        raise UserError(f"lora.dropout={lora.dropout!r} is invalid; valid: a number in [0, 1)")
    scale = lora.get("slow_lr_scale", 1.0)
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0):
        raise UserError(f"lora.slow_lr_scale={scale!r} is invalid; valid: a positive number "
                        "(0.1: the official PEFT script's lr / 10)")
    if lora.mode == "emoe" and not cfg.moe.enabled:
        raise UserError("lora=emoe tunes the converted layers, but moe=dense converts none; "
                        "valid: moe=emoe, or lora=moe_layers for the dense baseline")
    if lora.mode == "moe_layers" and cfg.moe.enabled:
        raise UserError("lora=moe_layers is the dense baseline, but moe is enabled; valid: "
                        "lora=emoe (EMoE + LoRA on the converted layers), or moe=dense")
