"""The runs a multirun would launch, listed without running anything (`emoe-grid`).

Expands `hydra.sweeper.params` (from the experiment preset) and the command line's sweep
overrides exactly as Hydra's basic sweeper does. The jobs are not composed, so presets
written against groups that do not exist yet (vision tasks, LoRA methods) still count.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra import initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from emoe_cli.config.checks import available_choices

CONFIG_MODULE, CONFIG_NAME = "emoe_cli.conf", "config"


def sweep_config(overrides: list[str]) -> DictConfig:
    """The config a `--multirun` with these overrides starts from (hydra node included)."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return GlobalHydra.instance().hydra.compose_config(
            CONFIG_NAME, overrides, run_mode=RunMode.MULTIRUN)


def planned_runs(overrides: list[str], cfg: DictConfig | None = None) -> list[list[str]]:
    """Each job's override list, in launch order (the sweeper params, then the command line)."""
    cfg = cfg if cfg is not None else sweep_config(overrides)
    params = cfg.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    arguments += OmegaConf.to_container(cfg.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    return BasicSweeper.split_arguments(parsed, None)[0]


@dataclass(frozen=True)
class Grid:
    """One grid preset: how many runs it launches, whether the paper's count includes them
    (`sweep.paper`), and the table or figure it reproduces (`sweep.source`)."""

    runs: int
    paper: bool
    source: str


def grid_sizes() -> dict[str, Grid]:
    """Experiment presets that define a sweep (`hydra.sweeper.params`), with their run counts."""
    sizes = {}
    for name in available_choices("experiment"):
        cfg = sweep_config([f"experiment={name}"])
        if cfg.hydra.sweeper.get("params"):
            sizes[name] = Grid(len(planned_runs([], cfg)), bool(cfg.sweep.get("paper", False)),
                               cfg.sweep.get("source") or "")
    return sizes


def job_config(overrides: list[str]) -> DictConfig:
    """One job's config as `emoe-run` would see it (without the hydra node)."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        cfg = GlobalHydra.instance().hydra.compose_config(CONFIG_NAME, overrides,
                                                          run_mode=RunMode.RUN)
    with_hydra = OmegaConf.to_container(cfg, resolve=False)
    with_hydra.pop("hydra", None)
    return OmegaConf.create(with_hydra)
