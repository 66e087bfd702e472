"""Checks on the composed config, so user mistakes surface as one clear line.

What one key alone must be is in its schema (`emoe_cli/config/schema.py`); this module holds every
check that spans keys or groups, or needs the file system, so there is one place to look.
The model's own guards (`moe/choices.check_routing`, `moe/profile.check_values`) serve the
Python API too; the config checks call them rather than repeat them.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from emoe_cli.config.naming import lora_enabled
from emoe_cli.config.schema import LoraSchema, check_node, check_schemas
from emoe_cli.errors import UserError
from emoe_cli.moe.choices import check_routing
from emoe_cli.moe.profile import resolve_profile
from emoe_cli.tracking.trackers import check_loggers


@cache
def config_groups() -> tuple[str, ...]:
    """The config groups shipped: every folder under conf/ that holds presets (`model`,
    `method`, ..., nested ones as `hydra/launcher`)."""
    def walk(folder, prefix: str):
        for item in folder.iterdir():
            if item.is_dir() and not item.name.startswith(("_", ".")):
                group = f"{prefix}{item.name}"
                if any(p.name.endswith(".yaml") for p in item.iterdir()):
                    yield group
                yield from walk(item, f"{group}/")

    return tuple(sorted(walk(resources.files("emoe_cli.conf"), "")))


def available_choices(group: str) -> list[str]:
    """The presets shipped for a config group (the YAML files under conf/<group>/)."""
    folder = resources.files("emoe_cli.conf").joinpath(*group.split("/"))
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def check_group_choices(overrides: list[str]) -> str | None:
    """A message for the first `group=choice` override naming a preset that does not exist.

    Hydra reports these too, but over many lines; this keeps it to one. Overrides it cannot
    parse are left to Hydra, and so are Hydra's own groups (`hydra/launcher=...`), whose
    plugins bring presets of their own.
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
        if group not in config_groups() or group.startswith("hydra/") or override.is_delete():
            continue
        try:
            values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                      else [override.value()])
        except Exception:
            continue
        valid = available_choices(group)
        for value in values:
            for choice in value if isinstance(value, list) else [value]:  # logger=[csv,wandb]
                if choice is not None and str(choice) not in valid:
                    return f"{group}={choice} is unknown; valid: {', '.join(valid)}"
    return None


def _require(condition: bool, key: str, value, valid: str) -> None:
    if not condition:
        raise UserError(f"{key}={value!r} is invalid; valid: {valid}")


def validate(cfg: DictConfig) -> None:
    """Raise `UserError` naming the first bad key, its value and what would be valid.

    Types and ranges come from the schemas (emoe_cli.config.schema); what spans several keys or
    needs the file system is checked here.
    """
    check_schemas(cfg)
    run_profile(cfg)
    if cfg.data.root is not None:
        _require(Path(cfg.data.root).expanduser().is_dir(), "data.root", cfg.data.root,
                 "an existing glue_data-style directory, or null for the hub")
    validate_lora(cfg)
    if cfg.get("logger") is not None:
        check_loggers(cfg.logger)  # a tracker whose package is missing: before any run folder
    if cfg.moe.enabled:
        validate_moe(cfg)
    elif cfg.gate.name != "avg_k":
        raise UserError(f"gate={cfg.gate.name} needs experts to route to, but moe=dense has "
                        "none; valid: moe=emoe (or drop the gate override)")


def run_profile(cfg: DictConfig):
    """The run's `Profile` (`moe/profile.py`) from the `profile` group, or a `UserError`
    naming the bad switch."""
    if cfg.get("profile") is None:  # a config composed without the group: the clean layer
        return resolve_profile("clean")
    try:
        return resolve_profile(OmegaConf.to_container(cfg.profile, resolve=True))
    except ValueError as error:
        raise UserError(str(error)) from None


def validate_moe(cfg: DictConfig) -> None:
    """What ties MoE keys together: k against N (and GMoE copies), export, routing options."""
    moe = cfg.moe
    repeat = cfg.gate.get("expert_repeat", 1)
    _require(moe.top_k <= moe.num_experts, "moe.top_k", moe.top_k,
             f"1..moe.num_experts ({moe.num_experts})")
    _require(repeat <= moe.num_experts, "gate.expert_repeat", repeat,
             f"1..moe.num_experts ({moe.num_experts}): each expert joins that many groups")
    _require(not (moe.export_dense and repeat > 1), "moe.export_dense", moe.export_dense,
             "false with gate.expert_repeat > 1 (expert copies have no dense layout)")
    try:
        check_routing(cfg.gate.name, moe.select, cfg.gate.get("capacity_factor"))
    except ValueError as error:
        raise UserError(f"moe.select / gate.capacity_factor: {error}") from None


def validate_lora(cfg: DictConfig) -> None:
    """The `lora` group's values, and its mode against the `moe` choice."""
    if not lora_enabled(cfg):
        return
    check_node(cfg.lora, "lora.", LoraSchema)
    if cfg.lora.mode == "emoe" and not cfg.moe.enabled:
        raise UserError("lora=emoe tunes the converted layers, but moe=dense converts none; "
                        "valid: moe=emoe, or lora=moe_layers for the dense baseline")
    if cfg.lora.mode == "moe_layers" and cfg.moe.enabled:
        raise UserError("lora=moe_layers is the dense baseline, but moe is enabled; valid: "
                        "lora=emoe (EMoE + LoRA on the converted layers), or moe=dense")
