"""The `lora` group's switch, its name in records and its checks, without torch or peft: the
CLI checks a config with these before any model code loads (`lora.py` applies the adapters)."""

from __future__ import annotations

from omegaconf import DictConfig

from emoe_cli.errors import UserError

LORA_MODES = ("standard", "moe_layers", "emoe")


def lora_enabled(cfg: DictConfig) -> bool:
    lora = cfg.get("lora")
    return bool(lora is not None and lora.get("enabled"))


def lora_method(base: str, cfg: DictConfig) -> str:
    """The run's `method` given the one without LoRA (`dense`, `emoe`, ...), named as the
    `method=` presets are: `lora`, `lora_block` (whole blocks tuned too), `lora_emoe` /
    `lora_gmoe` / `lora_emoe_learn` for the official runs (standard LoRA next to the converted
    layer); `lora_moe_layers` on a dense model; `emoe_lora` (or `<gate method>_lora`) for
    adapters on the experts (`lora=emoe`); `_blocks` when whole blocks are tuned otherwise.
    """
    if not lora_enabled(cfg):
        return base
    mode, blocks = cfg.lora.mode, bool(cfg.lora.get("train_blocks"))
    if mode == "standard":
        if base == "dense":
            return "lora_block" if blocks else "lora"
        if base == "gmoe" or not blocks:  # GMoE's official run tunes its block whole
            return f"lora_{base}"
    if base == "dense":
        method = "lora" if mode == "standard" else f"lora_{mode}"
    else:
        method = f"{base}_lora" if mode == "emoe" else f"lora_{base}"
    return method + ("_blocks" if blocks else "")


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
