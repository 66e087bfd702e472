"""How a run turns its model into its method: the method's name in records, and the FFN
conversion with the run's MoE and gate settings. Importing it loads no torch: `emoe-run` names
its run before any model code loads."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from emoe_cli.config.checks import run_profile
from emoe_cli.config.naming import method_name  # noqa: F401 (records and tests import it here)
from emoe_cli.errors import UserError
from emoe_cli.moe.spec import LayerSpec

if TYPE_CHECKING:
    import torch

    from emoe_cli.training.loop import LoopHooks


def convert(model: torch.nn.Module, cfg: DictConfig) -> None:
    """Apply `emoefy` with the run's MoE and gate settings."""
    from emoe_cli.moe.convert import emoefy_spec  # torch: only once a model is converted

    with moe_errors():
        emoefy_spec(model, layer_spec(cfg), layers=cfg.moe.layers, seed=cfg.moe.cluster_seed,
                    split=cfg.moe.split, cluster_cache=cfg.moe.cluster_cache,
                    execution=cfg.moe.get("execution", "auto"))


def layer_spec(cfg: DictConfig) -> LayerSpec:
    """What each converted layer computes, from the `moe`, `gate` and `profile` groups."""
    return LayerSpec(num_experts=cfg.moe.num_experts, top_k=cfg.moe.top_k, gate=cfg.gate.name,
                     gate_options=gate_options(cfg.gate), selection=cfg.moe.selection,
                     select=cfg.moe.select, capacity_factor=cfg.gate.get("capacity_factor"),
                     expert_repeat=cfg.gate.get("expert_repeat", 1), profile=run_profile(cfg))


def balance_loss_weight(cfg: DictConfig) -> float:
    """The weight of the layers' balancing losses in the training loss: the profile's (Tutel's
    loss, every MoE layer) when it sets one, else the trained gate's (`gate.aux_loss_weight`)."""
    if not cfg.moe.enabled:
        return 0.0
    return run_profile(cfg).balance_loss_weight or cfg.gate.get("aux_loss_weight", 0.0)


def loop_hooks(model: torch.nn.Module, balance_weight: float) -> LoopHooks:
    """The method's part in the training loop: the converted layers' balancing losses, times
    `balance_weight`, join the task loss (none at 0), and avg-k routers are recomputed from
    their keys after every optimiser step. `model` is the unwrapped model."""
    from emoe_cli.moe.convert import balance_loss, emoe_modules, refresh_routers
    from emoe_cli.training.loop import LoopHooks

    layers = list(emoe_modules(model))
    extra = (lambda: balance_weight * balance_loss(layers)) if balance_weight else None
    return LoopHooks(extra_loss=extra, after_step=(lambda: refresh_routers(model),))


def gate_options(gate_cfg: DictConfig) -> dict:
    """The router's own options: the gate config less what the runner itself reads."""
    options = OmegaConf.to_container(gate_cfg, resolve=True)
    for key in ("name", "method", "aux_loss_weight", "capacity_factor", "expert_repeat"):
        options.pop(key, None)
    return options


@contextmanager
def moe_errors():
    """Report the method's argument errors as user errors on the `moe` keys."""
    try:
        yield
    except ValueError as error:
        raise UserError(f"moe: {error}") from error
