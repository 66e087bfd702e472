"""Output folder names: a run's method from its config alone (`${emoe_method:}`) and a few
random hex digits (`${emoe_uid:}`), torch-free so that folder names resolve before any model
library loads. Importing it registers both resolvers."""

from __future__ import annotations

import secrets

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


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


def method_name(cfg: DictConfig) -> str:
    """`dense`, or the gate's method (`emoe`, ...) with suffixes for ablations (`_random`
    split, `_other` / `_bottom` selection, `_train_dense` / `_eval_dense`, `_noisy`); `noisy`
    for NoisyTune."""
    if not cfg.moe.enabled:
        return lora_method("noisy" if cfg.moe.get("noise_lambda") else "dense", cfg)
    ablations = [f"_{cfg.moe.selection}" if cfg.moe.selection != "top" else "",
                 *(f"_{phase}_dense" for phase in ("train", "eval")
                   if cfg.moe[f"{phase}_as"] == "dense"),
                 "_noisy" if cfg.moe.get("noise_lambda") else ""]
    base = cfg.gate.method + ("_random" if cfg.moe.split == "random" else "")
    return lora_method(base + "".join(ablations), cfg)


def folder_method(_root_: DictConfig) -> str:
    """`${emoe_method:}`: the method for folder names; a config too broken to name one gives
    `unnamed`, leaving the error to the config checks, which say what is wrong in one line."""
    try:
        return method_name(_root_)
    except (OmegaConfBaseException, AttributeError, KeyError, TypeError):
        return "unnamed"


OmegaConf.register_new_resolver("emoe_method", folder_method, replace=True)
# A few random hex digits in every output folder name, so two runs or sweeps started in the
# same second never share a folder. Cached like Hydra's ${now:}, so a sweep's jobs agree.
OmegaConf.register_new_resolver("emoe_uid", lambda: secrets.token_hex(2), use_cache=True,
                                replace=True)
