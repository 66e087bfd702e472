"""Typed schemas for the config groups, with the range of every value.

The YAML presets stay the place where defaults live; these dataclasses say what each value
must be. A composed config is checked against them before any work starts, so a wrong type
or an out-of-range number becomes one line naming the key, the value and what is valid.
Keys a schema does not list are left to the code that reads them.
"""

import math
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emoe_cli.errors import UserError
from emoe_cli.moe.choices import MODES, SELECTIONS, SELECTS


def check(description: str, test) -> dict:
    """Field metadata: `test(value)` must hold, else the error says `description`."""
    return {"valid": description, "test": test}


def at_least(low: int) -> dict:
    return check(f"an integer >= {low}", lambda v: v >= low)


def positive() -> dict:
    return check("a positive number", lambda v: v > 0)


def positive_finite() -> dict:
    return check("a positive finite number", lambda v: math.isfinite(v) and v > 0)


def unit_interval(upper_open: bool = False) -> dict:
    bound = ")" if upper_open else "]"
    return check(f"a number in [0, 1{bound}",
                 lambda v: 0 <= v < 1 if upper_open else 0 <= v <= 1)


def one_of(*choices: str) -> dict:
    return check(", ".join(choices), lambda v: v in choices)


def optional(meta: dict) -> dict:
    return check(meta["valid"] + " or null", lambda v: v is None or meta["test"](v))


@dataclass
class TrainerSchema:
    lr: float = field(default=2e-5, metadata=positive_finite())
    epochs: int = field(default=10, metadata=at_least(1))
    max_steps: int | None = field(default=None, metadata=optional(at_least(1)))
    batch_size: int = field(default=32, metadata=at_least(1))
    eval_batch_size: int = field(default=128, metadata=at_least(1))
    gradient_accumulation_steps: int = field(default=1, metadata=at_least(1))
    weight_decay: float = field(default=0.0, metadata=check("a number >= 0", lambda v: v >= 0))
    warmup_ratio: float = field(default=0.0, metadata=unit_interval(upper_open=True))
    max_grad_norm: float = field(default=1.0, metadata=check("a number >= 0 (0 = no clipping)",
                                                             lambda v: v >= 0))
    early_stop_patience: int = field(default=4, metadata=at_least(0))
    optimizer: str = field(default="adamw", metadata=one_of("adamw", "adam"))
    lr_scheduler: str = field(default="linear", metadata=one_of("linear", "cosine", "constant"))
    eval_every_steps: int | None = field(default=None, metadata=optional(at_least(1)))
    log_every_steps: int = field(default=100, metadata=at_least(0))
    precision: str = field(default="fp32", metadata=one_of("fp32", "bf16", "fp16"))
    device: str = field(default="auto", metadata=one_of("auto", "cpu", "cuda"))
    num_workers: int = field(default=0, metadata=at_least(0))
    checkpoint: bool = True
    checkpoint_dir: str = "outputs/checkpoints"
    resume: bool = True
    keep_checkpoint: bool = False


@dataclass
class DataSchema:
    root: str | None = None
    max_train_samples: int | None = field(default=None, metadata=optional(at_least(1)))
    max_eval_samples: int | None = field(default=None, metadata=optional(at_least(1)))
    subset_seed: int = 0
    train_fraction: float = field(default=1.0, metadata=check("a number in (0, 1]",
                                                              lambda v: 0 < v <= 1))
    selection: str = field(default="dev", metadata=one_of("dev", "heldout"))
    selection_fraction: float = field(default=0.1, metadata=check("a number in (0, 1)",
                                                                  lambda v: 0 < v < 1))
    ood_missing: str = field(default="skip", metadata=one_of("skip", "error"))  # tasks.py


@dataclass
class ModelSchema:
    name: str = "minilm"
    name_or_path: str = ""
    gguf_file: str | None = None  # one GGUF file in name_or_path (a folder or hub repo)
    max_length: int = field(default=128, metadata=at_least(1))


@dataclass
class MoESchema:
    enabled: bool = True
    num_experts: int = field(default=64, metadata=at_least(1))
    top_k: int = field(default=16, metadata=at_least(1))
    layers: Any = None  # a list of block indices or a rule name: checked against the model
    split: str = field(default="cluster", metadata=one_of("cluster", "random"))
    cluster_seed: int = 0
    selection: str = field(default="top", metadata=one_of(*SELECTIONS))
    train_as: str = field(default="emoe", metadata=one_of(*MODES))
    eval_as: str = field(default="emoe", metadata=one_of(*MODES))
    select: str = field(default="gate", metadata=one_of(*SELECTS))
    noise_lambda: float = field(default=0.0, metadata=check("a number >= 0 (0: no NoisyTune)",
                                                            lambda v: v >= 0))
    receipt_tolerance: float = field(default=1e-3, metadata=check("a number >= 0",
                                                                  lambda v: v >= 0))
    receipt_batch_size: int = field(default=8, metadata=at_least(1))
    cluster_cache: str | None = None
    save_model: bool = False
    export_dense: bool = False


@dataclass
class DenseSchema:
    """`moe=dense` (and `moe=noisy`): no experts, only the options that apply to any model."""

    enabled: bool = False
    noise_lambda: float = field(default=0.0, metadata=check("a number >= 0 (0: no NoisyTune)",
                                                            lambda v: v >= 0))
    save_model: bool = False
    export_dense: bool = False


@dataclass
class AvgKGateSchema:
    momentum: float = field(default=0.0, metadata=unit_interval(upper_open=True))
    normalize: bool = False
    capacity_factor: float | None = field(default=None, metadata=optional(positive()))


@dataclass
class TrainedGateSchema:
    """What every trained router (EMoE-learn, GMoE) shares."""

    noise: float = field(default=0.0, metadata=check("a number >= 0", lambda v: v >= 0))
    aux_loss_weight: float = field(default=0.01, metadata=check("a number >= 0",
                                                                lambda v: v >= 0))
    capacity_factor: float | None = field(default=None, metadata=optional(positive()))
    expert_repeat: int = field(default=1, metadata=at_least(1))


@dataclass
class LearnedGateSchema(TrainedGateSchema):
    init: str = field(default="keys", metadata=one_of("keys", "random"))


@dataclass
class CosineGateSchema(TrainedGateSchema):
    proj_dim: int = field(default=256, metadata=at_least(1))
    temperature: float = field(default=0.5, metadata=positive())


@dataclass
class ProfileSchema:
    """`profile=`: the official code's extras, each its own switch (`moe/profile.py`)."""

    name: str = field(default="official", metadata=one_of("official", "clean"))
    token_dropping: bool = True
    capacity_factor: float = field(default=1.5, metadata=positive())
    b2_split: bool = True
    expert_dropout: float = field(default=0.1, metadata=unit_interval(upper_open=True))
    router_noise: float = field(default=1.0, metadata=check("a number >= 0", lambda v: v >= 0))
    balance_loss_weight: float = field(default=0.01, metadata=check("a number >= 0",
                                                                    lambda v: v >= 0))
    router_fp32: bool = True
    moe_output_dropout: bool = False
    max_grad_norm: float | None = field(default=0.0, metadata=optional(check(
        "a number >= 0 (0 = no clipping)", lambda v: v >= 0)))


@dataclass
class EvalSchema:
    """`eval.*`: what an evaluation keeps (emoe-run and emoe-eval)."""

    save_predictions: bool = False


@dataclass
class RunSchema:
    # numpy's seed (set by accelerate's set_seed) takes 0..2**32-1 and nothing else
    seed: int = field(default=0, metadata=check(f"an integer in 0..{2**32 - 1}",
                                                lambda v: 0 <= v < 2**32))


GROUP_SCHEMAS = {"trainer": TrainerSchema, "data": DataSchema, "model": ModelSchema,
                 "moe": MoESchema, "profile": ProfileSchema, "eval": EvalSchema}
GATE_SCHEMAS = {"avg_k": AvgKGateSchema, "learned": LearnedGateSchema,
                "cosine": CosineGateSchema}
TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_schemas(cfg: DictConfig) -> None:
    """Raise `UserError` for the first value of the wrong type or out of its range."""
    check_node(cfg, "", RunSchema)
    for group, schema in GROUP_SCHEMAS.items():
        if group == "moe" and not cfg.moe.enabled:
            schema = DenseSchema  # moe=dense leaves the expert settings empty
        if group in cfg:
            check_node(cfg[group], f"{group}.", schema)
    gate_schema = GATE_SCHEMAS.get(cfg.gate.get("name"))
    if gate_schema is not None:
        check_node(cfg.gate, "gate.", gate_schema)


def check_node(node: DictConfig, prefix: str, schema: type) -> None:
    """Type-check the keys of `node` that `schema` lists (through OmegaConf), then ranges."""
    known = {f.name for f in fields(schema)}
    values = {key: node[key] for key in known if key in node}
    typed = OmegaConf.structured(schema)
    for key, value in values.items():
        try:
            typed[key] = value
        except OmegaConfBaseException:
            expected = _expected_type(schema, key)
            raise UserError(f"{prefix}{key}={value!r} is invalid; valid: {expected}") from None
    instance = OmegaConf.to_object(typed)
    for spec in fields(schema):
        if spec.name not in values or "test" not in spec.metadata:
            continue
        value = getattr(instance, spec.name)
        if not spec.metadata["test"](value):
            raise UserError(f"{prefix}{spec.name}={values[spec.name]!r} is invalid; valid: "
                            f"{spec.metadata['valid']}")


def _expected_type(schema: type, key: str) -> str:
    spec = next(f for f in fields(schema) if f.name == key)
    if "valid" in spec.metadata:
        return spec.metadata["valid"]
    types = getattr(spec.type, "__args__", (spec.type,))
    names = [TYPE_NAMES.get(t, "null" if t is type(None) else getattr(t, "__name__", str(t)))
             for t in types]
    return " or ".join(names)
