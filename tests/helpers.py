"""Compose the project's Hydra config in tests, exactly as `emoe-run` would."""

from __future__ import annotations

from hydra import compose, initialize_config_module
from omegaconf import DictConfig


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_module("emoe_cli.conf", version_base="1.3"):
        return compose("config", overrides=overrides or [])
