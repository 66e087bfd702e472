"""`emoe-inspect`: what converting a model keeps, over layers × k, before spending compute.

It takes emoe-run's config (model, task, data, moe, gate) plus `inspect.*` (conf/inspect.yaml)
and, without training, measures on the first training examples each block's kept share of
|activation| mass and the final hidden state's change against dense when only that block is
converted, and the same for the configured `moe.layers`, for every k asked and for the
clustered and random splits. It prints the table and writes inspect.csv and inspect.png to
its output folder.
"""

# ruff: noqa: E402
from __future__ import annotations

from emoe_cli.engine.openmp import sleep_when_idle

sleep_when_idle()  # before anything loads torch (and with it OpenMP)

import copy
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from emoe_cli.config import naming  # noqa: F401 (registers ${emoe_uid:} for folders)
from emoe_cli.config.checks import check_group_choices, validate
from emoe_cli.config.preflight import exit_on_bad_command_line
from emoe_cli.config.schema import InspectSchema, check_node
from emoe_cli.errors import UserError
from emoe_cli.extras import require
from emoe_cli.moe.choices import SPLITS
from emoe_cli.moe.layers import LAYER_RULES, resolve_layers

if TYPE_CHECKING:
    from emoe_cli.analysis.conversion_table import InspectRow

PROG = "emoe-inspect"
USER_ERROR_EXIT = 2
LISTS = ("top_k", "layers")  # keys that take a list, so a range or a comma sweep becomes one


KEYS = tuple(spec.name for spec in fields(InspectSchema))


def top_ks(value, configured: int, num_experts: int) -> list[int]:
    """`inspect.top_k` as sorted distinct k; null: the run's k halved, as is and doubled."""
    if value is None:
        return sorted({k for k in (configured // 2, configured, configured * 2)
                       if 1 <= k <= num_experts})
    values = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int)
           or not 1 <= v <= num_experts]
    if bad or not values:
        raise UserError(f"inspect.top_k={_text(value)}: {bad[0] if bad else 'an empty list'} "
                        f"is not a k for N={num_experts}; valid: integers in 1..{num_experts}, "
                        "as a list, range(start,stop,step), or null (moe.top_k halved, as is, "
                        "doubled)")
    return sorted(set(values))


def inspect_layers(value, num_layers: int) -> list[int]:
    """`inspect.layers` as block indices (the same rules as `moe.layers`)."""
    spec = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
    try:
        return resolve_layers(spec, num_layers)
    except (ValueError, TypeError):
        raise UserError(f"inspect.layers={_text(value)}: not blocks of this {num_layers}-layer "
                        f"model; valid: {LAYER_RULES} in 0..{num_layers - 1}") from None


def _text(value) -> str:
    return str(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)


def check_overrides(overrides: list[str]) -> tuple[list[str], str | None]:
    """The overrides with `inspect.top_k` / `inspect.layers` ranges and comma lists written
    as lists, and a message for the first unknown preset or `inspect.` key (else None)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    problem = check_group_choices(overrides)
    if problem:
        return overrides, problem
    parser, rewritten = OverridesParser.create(), []
    for text in overrides:
        key = text.split("=", 1)[0].lstrip("+~")
        if key.startswith("inspect."):
            name = key[len("inspect."):]
            if name not in KEYS:
                return overrides, (f"inspect.{name} is unknown; valid: "
                                   + ", ".join(f"inspect.{k}" for k in KEYS))
            try:
                override = parser.parse_override(text)
            except Exception:
                return overrides, f"{text} does not parse; valid e.g. inspect.top_k=[8,16,32]"
            if name in LISTS and override.is_sweep_override():
                text = f"{key}=[{','.join(override.sweep_string_iterator())}]"
        rewritten.append(text)
    return rewritten, None


def measurement_config(cfg: DictConfig) -> DictConfig:
    """The run's config less its OOD sets, which the measurement never reads."""
    trimmed = copy.deepcopy(cfg)
    with open_dict(trimmed):
        trimmed.task.ood = []
    return trimmed


def check_config(cfg: DictConfig) -> None:
    """`UserError` for what the config alone shows to be wrong (no model loaded)."""
    validate(cfg)
    if not cfg.moe.enabled:
        raise UserError("moe: moe=dense has no experts to inspect; valid: an MoE preset "
                        "(moe=emoe, method=emoe, ...)")
    check_node(cfg.get("inspect") or OmegaConf.create({}), "inspect.", InspectSchema)


def inspect(cfg: DictConfig, output_dir: str | Path) -> tuple[list[InspectRow], str]:
    """Measure, write inspect.csv and inspect.png under `output_dir`; return the rows and
    the text to print."""
    # torch, transformers and matplotlib: only once something is measured
    from emoe_cli.analysis.conversion_table import conversion_table
    from emoe_cli.analysis.conversion_view import (
        CSV_FILE,
        PNG_FILE,
        plot_heatmap,
        text_table,
        write_csv,
    )
    from emoe_cli.experiment.method import convert, moe_errors
    from emoe_cli.models.pretrained import load_config, resolve_weights
    from emoe_cli.moe.convert import check_fits
    from emoe_cli.moe.noise import add_uniform_noise
    from emoe_cli.moe.receipt import probe_batch
    from emoe_cli.workloads import build_workload

    started = time.perf_counter()
    check_config(cfg)
    settings = OmegaConf.merge(OmegaConf.structured(InspectSchema), cfg.get("inspect") or {})
    weights = resolve_weights(cfg.model.name_or_path, cfg.model.get("gguf_file"),
                              cfg.model.get("missing_hint"))
    model_config = load_config(weights)
    with moe_errors():
        check_fits(model_config, cfg.moe.num_experts, cfg.moe.layers)
    total = cfg.moe.num_experts * cfg.gate.get("expert_repeat", 1)
    ks = top_ks(settings.top_k, cfg.moe.top_k, total)
    layers = inspect_layers(settings.layers, model_config.num_hidden_layers)
    configured = resolve_layers(cfg.moe.layers, model_config.num_hidden_layers)
    splits = list(SPLITS) if settings.contrast else [cfg.moe.split]

    workload = build_workload(measurement_config(cfg), weights)
    model = workload.load_model(weights).eval()
    add_uniform_noise(model, cfg.moe.get("noise_lambda", 0.0), seed=cfg.seed)  # as emoe-run
    batch = probe_batch(workload.data.train, workload.collate, settings.batch_size)

    def converter(net, split: str, blocks: list[int]) -> None:
        run_cfg = copy.deepcopy(cfg)
        with open_dict(run_cfg):
            run_cfg.moe.split, run_cfg.moe.layers = split, blocks
        convert(net, run_cfg)

    rows = conversion_table(model, batch, converter, layers, configured, ks, splits)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_csv(rows, out / CSV_FILE), plot_heatmap(rows, out / PNG_FILE)]
    tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else None
    examples = len(next(iter(batch.values())))
    header = (f"{PROG}: {cfg.model.name} · {cfg.task.name} · N={cfg.moe.num_experts} · gate "
              f"{cfg.gate.name} · {examples} training examples"
              + (f" ({tokens} tokens)" if tokens else "")
              + f" · {time.perf_counter() - started:.1f}s")
    return rows, "\n".join([header, "", text_table(rows), "", *(f"written: {f}" for f in files)])


@hydra.main(version_base="1.3", config_path="pkg://emoe_cli.conf", config_name="inspect")
def main(cfg: DictConfig) -> None:
    require(PROG, ("matplotlib",))  # here, so that --help and --cfg answer without it
    try:
        _, text = inspect(cfg, HydraConfig.get().runtime.output_dir)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    print(text)


def cli() -> None:
    """Console entry point: one-line errors for unknown `inspect.` keys, ranges written as
    lists, then emoe-run's checks (unknown presets and keys, bad values: preflight.py), then
    Hydra."""
    sys.argv[1:], problem = check_overrides(sys.argv[1:])
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    exit_on_bad_command_line(PROG, sys.argv[1:], "inspect", check_config)
    main()


if __name__ == "__main__":
    cli()
