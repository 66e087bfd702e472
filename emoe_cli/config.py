"""Checks on the composed config, so user mistakes surface as one clear line."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from omegaconf import DictConfig

from emoe_cli.errors import UserError
from emoe_cli.moe.convert import SPLITS
from emoe_cli.moe.execution import EXECUTIONS
from emoe_cli.moe.routers import ROUTERS

GROUPS = ("model", "task", "moe", "gate", "trainer", "logger", "experiment", "debug")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


def available_choices(group: str) -> list[str]:
    """The presets shipped for a config group (the YAML files under conf/<group>/)."""
    folder = resources.files("emoe_cli.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def check_group_choices(overrides: list[str]) -> str | None:
    """A message for the first `group=choice` override naming a preset that does not exist.

    Hydra reports these too, but over many lines; this keeps it to one. Overrides it cannot
    parse are left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [a for a in overrides if "=" in a and not a.startswith("-")]
    if any("searchpath" in a for a in candidates) or any(
        a in ("--config-dir", "-cd") or a.startswith("--config-dir=") for a in overrides
    ):
        return None  # the user may bring their own presets
    try:
        parsed = OverridesParser.create().parse_overrides(candidates)
    except Exception:
        return None
    for override in parsed:
        group = override.key_or_group
        if group not in GROUPS or override.is_delete():
            continue
        try:
            values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                      else [override.value()])
        except Exception:
            continue
        valid = available_choices(group)
        for value in values:
            if value is not None and str(value) not in valid:
                return f"{group}={value} is unknown; valid: {', '.join(valid)}"
    return None


def _require(condition: bool, key: str, value, valid: str) -> None:
    if not condition:
        raise UserError(f"{key}={value!r} is invalid; valid: {valid}")


def _positive_int(cfg: DictConfig, key: str, allow_none: bool = False) -> None:
    value = cfg
    for part in key.split("."):
        value = value.get(part)
    if value is None and allow_none:
        return
    _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key, value,
             "a positive integer" + (" or null" if allow_none else ""))


def validate(cfg: DictConfig) -> None:
    """Raise `UserError` naming the first bad key, its value and what would be valid."""
    trainer = cfg.trainer
    _require(isinstance(trainer.lr, (int, float)) and trainer.lr > 0, "trainer.lr", trainer.lr,
             "a positive number")
    for key in ("trainer.epochs", "trainer.batch_size", "trainer.eval_batch_size",
                "trainer.gradient_accumulation_steps", "model.max_length"):
        _positive_int(cfg, key)
    _positive_int(cfg, "trainer.max_steps", allow_none=True)
    _positive_int(cfg, "data.max_train_samples", allow_none=True)
    _positive_int(cfg, "data.max_eval_samples", allow_none=True)
    _require(trainer.precision in PRECISIONS, "trainer.precision", trainer.precision,
             ", ".join(PRECISIONS))
    _require(trainer.device in DEVICES, "trainer.device", trainer.device, ", ".join(DEVICES))
    _require(isinstance(cfg.seed, int), "seed", cfg.seed, "an integer")
    if cfg.data.root is not None:
        _require(Path(cfg.data.root).expanduser().is_dir(), "data.root", cfg.data.root,
                 "an existing glue_data-style directory, or null for the hub")
    if cfg.moe.enabled:
        validate_moe(cfg)
    elif cfg.gate.name != "avg_k":
        raise UserError(f"gate={cfg.gate.name} needs experts to route to, but moe=dense has "
                        "none; valid: moe=emoe (or drop the gate override)")


def validate_moe(cfg: DictConfig) -> None:
    moe = cfg.moe
    _positive_int(cfg, "moe.num_experts")
    _positive_int(cfg, "moe.top_k")
    _require(moe.top_k <= moe.num_experts, "moe.top_k", moe.top_k,
             f"1..moe.num_experts ({moe.num_experts})")
    _require(cfg.gate.name in ROUTERS, "gate", cfg.gate.name, ", ".join(sorted(ROUTERS)))
    _require(moe.split in SPLITS, "moe.split", moe.split, ", ".join(SPLITS))
    execution = moe.get("execution", "auto")
    _require(execution in EXECUTIONS, "moe.execution", execution, ", ".join(EXECUTIONS))
    _require(0.0 <= cfg.gate.get("momentum", 0.0) < 1.0, "gate.momentum",
             cfg.gate.get("momentum"), "a number in [0, 1)")
