"""The config groups as Hydra structured configs: every default once, with its valid range.

Each dataclass in STORED is kept in Hydra's ConfigStore (`register_schemas`, run when
`emoe_cli.conf` is imported) and pulled in by its preset's defaults list
(`- /schema/trainer@_here_`), so the YAML presets only override. The others (model, gates,
eval, the root's seed) are checked only, their values living in their presets. Hydra
refuses a value of the wrong type while composing; ranges and choices, which OmegaConf
cannot express, sit in each field's metadata and are checked on the composed config
(`check_schemas`), so a bad value is one line naming the key, the value and what is valid.
Numbers are typed `Number` (any): OmegaConf would store `0` as `0.0` and so change the value
a run records and its identity; their metadata checks that they are numbers.
"""

import math
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, FloatNode, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from emoe_cli.errors import UserError
from emoe_cli.moe.choices import MODES, SELECTIONS, SELECTS, SPLITS

LORA_MODES = ("standard", "moe_layers", "emoe")  # lora.mode: what the adapters go on

# task.metrics: the metric names a task may ask for. They live here, below both the task
# check (data/tasks.py) and the functions that compute them (evaluation/metrics.py).
METRIC_NAMES = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")

Number = Any  # an int or a float, kept as written (see the module docstring)


def as_number(value) -> float | None:
    """`value` as OmegaConf would store it in a float field, or None if it would refuse it."""
    try:
        return FloatNode(value)._value()
    except OmegaConfBaseException:
        return None


def check(description: str, test) -> dict:
    """Field metadata: `test(value)` must hold, else the error says `description`."""
    return {"valid": description, "test": test}


def number(description: str, test) -> dict:
    """Metadata for a `Number` field: a number (not a bool, not a string) for which `test`
    holds."""
    return check(description, lambda v: as_number(v) is not None and test(as_number(v)))


def at_least(low: int) -> dict:
    return check(f"an integer >= {low}", lambda v: v >= low)


def non_negative(description: str = "a number >= 0") -> dict:
    return number(description, lambda v: v >= 0)


def positive(description: str = "a positive number") -> dict:
    return number(description, lambda v: v > 0)


def positive_finite() -> dict:
    return number("a positive finite number", lambda v: math.isfinite(v) and v > 0)


def unit_interval(upper_open: bool = False) -> dict:
    bound = ")" if upper_open else "]"
    return number(f"a number in [0, 1{bound}",
                  lambda v: 0 <= v < 1 if upper_open else 0 <= v <= 1)


def one_of(*choices: str, verdict: str = "invalid") -> dict:
    """`verdict`: the message's word for a value not among `choices` (`is unknown`)."""
    return {**check(", ".join(choices), lambda v: v in choices), "verdict": verdict}


def optional(meta: dict) -> dict:
    return check(meta["valid"] + " or null", lambda v: v is None or meta["test"](v))


@dataclass
class TrainerSchema:
    """`trainer=default`: the original language scripts' defaults: AdamW, linear decay, no
    warm-up, evaluate every epoch, stop after 4 epochs without improvement, keep the best."""

    # adamw (language scripts) or adam (DomainBed: Vision/domainbed/algorithms.py:323)
    optimizer: str = field(default="adamw", metadata=one_of("adamw", "adam"))
    # linear (language scripts), cosine (EMoE_LLaMA/run_7B_emo.sh:9), constant (DomainBed)
    lr_scheduler: str = field(default="linear", metadata=one_of("linear", "cosine", "constant"))
    # null: evaluate after each epoch; N: every N optimiser steps and at the end
    eval_every_steps: int | None = field(default=None, metadata=optional(at_least(1)))
    # a progress line every N optimiser steps (0: epoch lines only); no source fixes it
    log_every_steps: int = field(default=100, metadata=at_least(0))
    lr: Number = field(default=2.0e-5, metadata=positive_finite())
    epochs: int = field(default=10, metadata=at_least(1))
    max_steps: int | None = field(default=None, metadata=optional(at_least(1)))  # overrides epochs
    batch_size: int = field(default=32, metadata=at_least(1))
    eval_batch_size: int = field(default=128, metadata=at_least(1))
    gradient_accumulation_steps: int = field(default=1, metadata=at_least(1))
    weight_decay: Number = field(default=0.0, metadata=non_negative())
    warmup_ratio: Number = field(default=0.0, metadata=unit_interval(upper_open=True))
    # the profile's: official 0 (no clipping), clean 1.0
    max_grad_norm: Number = field(default="${profile.max_grad_norm}",
                                  metadata=non_negative("a number >= 0 (0 = no clipping)"))
    early_stop_patience: int = field(default=4, metadata=at_least(0))  # 0 = never stop early
    precision: str = field(default="fp32", metadata=one_of("fp32", "bf16", "fp16"))  # autocast
    device: str = field(default="auto", metadata=one_of("auto", "cpu", "cuda"))
    num_workers: int = field(default=0, metadata=at_least(0))
    checkpoint: bool = True  # save after every epoch (and on SIGTERM/Ctrl-C) to resume from
    checkpoint_dir: str = "outputs/checkpoints"  # one folder per run identity (a config hash)
    resume: bool = True  # continue from this run's checkpoint if one exists
    keep_checkpoint: bool = False  # false: delete it once the run has completed


@dataclass
class DataSchema:
    """`data.*` (docs/protocols.md "Model selection", "OOD sets")."""

    root: str | None = None  # a glue_data-style folder (e.g. ../shared/data); null = the hub
    max_train_samples: int | None = field(default=None, metadata=optional(at_least(1)))
    # applies to the ID split and to each OOD set
    max_eval_samples: int | None = field(default=None, metadata=optional(at_least(1)))
    # a fixed random share of the (capped) training set
    train_fraction: Number = field(default=1.0, metadata=number("a number in (0, 1]",
                                                                lambda v: 0 < v <= 1))
    subset_seed: int = 0  # capped subsets are the same for every seed and method
    # dev: best epoch on the dev set it reports (the paper); heldout: a part of train
    # selects, dev only reports
    selection: str = field(default="dev", metadata=one_of("dev", "heldout"))
    selection_fraction: Number = field(default=0.1, metadata=number("a number in (0, 1)",
                                                                    lambda v: 0 < v < 1))
    # a GLUE-X self-collected OOD folder that is absent: skip (warn, list it in results.json
    # ood_missing) or error; no source fixes it
    ood_missing: str = field(default="skip", metadata=one_of("skip", "error"))


@dataclass
class ModelSchema:
    """`model=`: checked only (model presets add keys of their own, so no structured config;
    every value comes from the preset)."""

    name: str = MISSING
    name_or_path: str = MISSING
    gguf_file: str | None = None  # one GGUF file in name_or_path (a folder or hub repo)
    max_length: int = field(default=MISSING, metadata=at_least(1))


@dataclass
class MoESchema:
    """`moe=emoe`: split FFNs into experts; N and k from the model preset when it sets them
    (the paper's ViTs: N = 24, k = 4), else the paper's BERT setting (N = 64, k = 16)."""

    enabled: bool = True
    num_experts: int = field(default="${oc.select:model.moe_num_experts,64}",
                             metadata=at_least(1))
    top_k: int = field(default="${oc.select:model.moe_top_k,16}", metadata=at_least(1))
    # a list of block indices or a rule: all, even, odd, every_other, last_half, last_<n>
    layers: Any = "${model.moe_layers}"
    # cluster (balanced k-means) or random (ablation)
    split: str = field(default="cluster", metadata=one_of(*SPLITS))
    cluster_seed: int = 0  # the original clusters with seed 0 whatever the run seed
    # experts a token gets: top (EMoE), other (the N - k rest), bottom
    selection: str = field(default="top", metadata=one_of(*SELECTIONS))
    # emoe, or dense: train with every expert (k = N) and/or evaluate with every expert
    # (the paper's decoupling)
    train_as: str = field(default="emoe", metadata=one_of(*MODES))
    eval_as: str = field(default="emoe", metadata=one_of(*MODES))
    # avg_k scores: gate (router), up, inter, gate_abs, up_abs, inter_abs
    select: str = field(default="gate", metadata=one_of(*SELECTS))
    # NoisyTune on top: uniform noise of this x std(W) before conversion
    noise_lambda: Number = field(default=0.0,
                                 metadata=non_negative("a number >= 0 (0: no NoisyTune)"))
    # refuse to train if k = N differs from dense by more (max |logit diff|)
    receipt_tolerance: Number = field(default=1.0e-3, metadata=non_negative())
    # training examples the conversion receipt is measured on
    receipt_batch_size: int = field(default=8, metadata=at_least(1))
    # expert assignments cached per (weights hash, layer, N, seed); null: cluster every time
    cluster_cache: str | None = "${oc.env:EMOE_CLUSTER_CACHE,'~/.cache/emoe/clusters'}"
    save_model: bool = False  # <run dir>/model: emoe_cli.moe.load_emoe rebuilds it exactly
    # <run dir>/dense_model (plain transformers), scored on ID and OOD
    export_dense: bool = False
    execution: str = "auto"  # auto, masked or sparse: how layers compute (same function)


@dataclass
class DenseSchema:
    """`moe=dense` (and `moe=noisy`): no conversion, vanilla full fine-tuning of the dense
    model; only the options that apply to any model."""

    enabled: bool = False
    num_experts: int | None = None
    top_k: int | None = None
    layers: Any = None
    split: str | None = None
    cluster_seed: int = 0
    noise_lambda: Number = field(default=0.0,  # > 0: NoisyTune (see moe=noisy)
                                 metadata=non_negative("a number >= 0 (0: no NoisyTune)"))
    save_model: bool = False  # <run dir>/model, the fine-tuned weights
    # <run dir>/dense_model, scored on ID and OOD (here: the model itself)
    export_dense: bool = False
    execution: str | None = None  # no experts: nothing to execute sparsely


# The gates are checked, not composed from a schema: `~gate.method` (a gate without a method
# name) must stay possible, and OmegaConf cannot delete a key of a structured config. So a
# gate's values live in its preset, and these say only what each must be.
@dataclass
class AvgKGateSchema:
    """`gate=avg_k`: EMoE's gate (conf/gate/avg_k.yaml holds the values)."""

    name: str = MISSING
    method: str = MISSING
    momentum: Number = field(default=MISSING, metadata=unit_interval(upper_open=True))
    normalize: bool = MISSING
    capacity_factor: Number = field(default=MISSING, metadata=optional(positive()))


@dataclass
class LearnedGateSchema:
    """`gate=learned`: EMoE-learn's trained router (conf/gate/learned.yaml)."""

    name: str = MISSING
    method: str = MISSING
    init: str = field(default=MISSING, metadata=one_of("keys", "random"))
    noise: Number = field(default=MISSING, metadata=non_negative())
    aux_loss_weight: Number = field(default=MISSING, metadata=non_negative())
    capacity_factor: Number = field(default=MISSING, metadata=optional(positive()))


@dataclass
class CosineGateSchema:
    """`gate=cosine`: GMoE's cosine router (conf/gate/cosine.yaml, with each value's source)."""

    name: str = MISSING
    method: str = MISSING
    proj_dim: int = field(default=MISSING, metadata=at_least(1))
    temperature: Number = field(default=MISSING, metadata=positive())
    noise: Number = field(default=MISSING, metadata=non_negative())
    aux_loss_weight: Number = field(default=MISSING, metadata=non_negative())
    capacity_factor: Number = field(default=MISSING, metadata=optional(positive()))
    expert_repeat: int = field(default=MISSING, metadata=at_least(1))


@dataclass
class LoraOffSchema:
    """`lora=none`: the moe and gate groups decide what is fine-tuned."""

    enabled: bool = False
    mode: str | None = None


@dataclass
class LoraSchema:
    """`lora=standard` and `lora=emoe`: the paper's LoRA settings (the official PEFT script,
    Language/search_glue_no_trainer_peft.py); each preset names its mode."""

    enabled: bool = True
    mode: str = field(default=MISSING, metadata=one_of(*LORA_MODES, verdict="unknown"))
    # search_glue_no_trainer_peft.py:255 (--lora_r 8)
    r: int = field(default=8, metadata=check("a positive integer", lambda v: v >= 1))
    # search_glue_no_trainer_peft.py:425 (lora_alpha=16)
    alpha: Number = field(default=16, metadata=positive())
    # search_glue_no_trainer_peft.py:425 (lora_dropout=0.1)
    dropout: Number = field(default=0.1, metadata=unit_interval(upper_open=True))
    # trainable non-adapter, non-head parameters at lr / 10 (search_glue_no_trainer_peft.py:
    # 617-637)
    slow_lr_scale: Number = field(default=0.1, metadata=positive(
        "a positive number (0.1: the official PEFT script's lr / 10)"))
    # true: also train what lies outside the blocks but the embeddings (peft.py:442-491)
    train_outside_blocks: bool = False
    # blocks fully fine-tuned next to the adapters (official: [44] with
    # --tune_moe_layers_only, Language/README.md:52-55)
    train_blocks: Any = field(default_factory=list)


@dataclass
class LoraLayersSchema(LoraSchema):
    """`lora=moe_layers`: LoRA on the blocks in `layers` only."""

    layers: Any = "${model.moe_layers}"  # a list of block indices or a rule, as moe.layers


@dataclass
class ProfileSchema:
    """`profile=official`: the official code's layer and training extras, each its own switch
    (`moe/profile.py`), as GitHub qiuzh20/EMoE runs them: the Tutel layer that
    Language/moe_utils.py builds, tutel/tutel/impls/*, Language/search_glue_no_trainer.py.
    `profile=clean` overrides every one."""

    name: str = field(default="official", metadata=one_of("official", "clean"))
    # moe_layer.py:286-295 (capacity_factor > 0 in extract_critical); fast_dispatch.py:152-168,
    # 185-187 (rank by rank, batch priority, k*int(f*ceil(T/N))); sparse.py:29 (pairs past
    # capacity are skipped); moe_utils.py:154 (batch_prioritized_routing=True)
    token_dropping: bool = True
    # search_glue_no_trainer.py:231 (--capacity_factor default), passed at moe_utils.py:148
    capacity_factor: Number = field(default=1.5, metadata=positive())
    # moe_utils.py:143 (b2 / top_k per expert; ViT: Vision/domainbed/moe_utils.py:130);
    # experts/ffn.py:122 (added per slot)
    b2_split: bool = True
    # search_glue_no_trainer.py:222 (--moe_drop); moe_utils.py:20-26 (dropout, then GELU);
    # Vision/domainbed/vision_transformer.py:255, 281 (ViT: after GELU)
    expert_dropout: Number = field(default=0.1, metadata=unit_interval(upper_open=True))
    # search_glue_no_trainer.py:230 (--gate_noise); moe_layer.py:274-275 (logits + noise *
    # randn / N, training only)
    router_noise: Number = field(default=1.0, metadata=non_negative())
    # search_glue_no_trainer.py:229, 672-680 (every MoE layer's l_aux); moe_utils.py:155
    # (is_gshard_loss=False); moe_layer.py:283-285; losses.py:21-43
    balance_loss_weight: Number = field(default=0.01, metadata=non_negative())
    # moe_utils.py:146 (fp32_gate=True); gates/top.py:27-29; moe_layer.py:299-301 (routing
    # outside autocast)
    router_fp32: bool = True
    # moe_utils.py:297 (GPT-2: block.mlp replaced, its output dropout gone; BERT keeps
    # output.dropout outside the layer, moe_utils.py:186-190)
    moe_output_dropout: bool = False
    # search_glue_no_trainer.py:685-690 (backward, then step: no clipping); sets
    # trainer.max_grad_norm
    max_grad_norm: Number = field(default=0.0, metadata=optional(non_negative(
        "a number >= 0 (0 = no clipping)")))


@dataclass
class EvalSchema:
    """`eval.*` (emoe-run and emoe-eval): checked only, its value in config.yaml. A run handed
    a composed config with a bad value must still leave a failed record (tests/evaluation),
    which a refusal while composing would not."""

    save_predictions: bool = MISSING


@dataclass
class InspectSchema:
    """`inspect.*`: what emoe-inspect tabulates (conf/inspect.yaml)."""

    # a list of k (or range(8,33,8)); null: moe.top_k halved, as is, doubled (within 1..N);
    # checked against the model's N in inspection.top_ks; no source fixes it
    top_k: Any = None
    # blocks converted one at a time: all, a rule (even, last_half, ...) or a list; checked
    # against the model's depth in inspection.inspect_layers; no source fixes it
    layers: Any = "all"
    # first training examples measured on (runs use moe.receipt_batch_size); no source fixes it
    batch_size: int = field(default=64, metadata=at_least(1))
    contrast: bool = True  # also measure the other moe.split (random next to cluster), Sec. 4


@dataclass
class RunSchema:
    """The root keys (the root stays open for `+extra.<name>`, so checked only; config.yaml
    holds the default)."""

    # numpy's seed (set by accelerate's set_seed) takes 0..2**32-1 and nothing else
    seed: int = field(default=MISSING, metadata=check(f"an integer in 0..{2**32 - 1}",
                                                      lambda v: 0 <= v < 2**32))


GROUP_SCHEMAS = {"trainer": TrainerSchema, "data": DataSchema, "model": ModelSchema,
                 "moe": MoESchema, "profile": ProfileSchema, "eval": EvalSchema}
# The gates there are: gate.name -> its options. A new gate adds its schema here, its router
# class to moe/routers.py and its preset conf/gate/<name>.yaml.
GATE_SCHEMAS = {"avg_k": AvgKGateSchema, "learned": LearnedGateSchema,
                "cosine": CosineGateSchema}
# What Hydra composes: `- /schema/<name>@_here_` in a preset's defaults list.
STORED = {"trainer": TrainerSchema, "data": DataSchema, "inspect": InspectSchema,
          "profile": ProfileSchema, "moe/emoe": MoESchema, "moe/dense": DenseSchema,
          "lora/none": LoraOffSchema, "lora/adapters": LoraSchema,
          "lora/moe_layers": LoraLayersSchema}
TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore as `schema/<name>`."""
    store = ConfigStore.instance()
    for name, schema in STORED.items():
        group, _, leaf = f"schema/{name}".rpartition("/")
        store.store(group=group, name=leaf, node=schema)


def check_schemas(cfg: DictConfig) -> None:
    """Raise `UserError` for the first value of the wrong type or out of its range."""
    if cfg.gate.name not in GATE_SCHEMAS:
        raise UserError(invalid("gate", cfg.gate.name, ", ".join(sorted(GATE_SCHEMAS))))
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
    """Type-check the keys of `node` that `schema` lists (through OmegaConf), then ranges.

    Composition has typed a structured node already; this also serves configs read back
    from a run folder, which are plain."""
    known = {f.name for f in fields(schema)}
    values = {key: node[key] for key in known if key in node}
    typed = OmegaConf.structured(schema)
    for key, value in values.items():
        try:
            typed[key] = value
        except OmegaConfBaseException:
            raise UserError(invalid(prefix + key, value, expected(schema, key))) from None
    for spec in fields(schema):
        if spec.name not in values or "test" not in spec.metadata:
            continue
        if not spec.metadata["test"](typed[spec.name]):
            raise UserError(invalid(prefix + spec.name, values[spec.name],
                                    spec.metadata["valid"], spec.metadata.get("verdict")))


def invalid(key: str, value, valid: str, verdict: str | None = None) -> str:
    return f"{key}={value!r} is {verdict or 'invalid'}; valid: {valid}"


def expected(schema: type, key: str) -> str:
    """What `schema` accepts for `key`: its metadata's description, else its type's name."""
    spec = next(f for f in fields(schema) if f.name == key)
    if "valid" in spec.metadata:
        return spec.metadata["valid"]
    types = getattr(spec.type, "__args__", (spec.type,))
    names = [TYPE_NAMES.get(t, "null" if t is type(None) else getattr(t, "__name__", str(t)))
             for t in types]
    return " or ".join(names)


def composition_refusal(error: Exception) -> str | None:
    """Hydra's refusal of a value a structured config types (`trainer.epochs=abc`) as the
    one line `check_schemas` would print, or None for any other composition error."""
    cause = error.__cause__ or error
    key = getattr(cause, "full_key", None) or ""
    if type(cause).__name__ != "ValidationError" or "." not in key:
        return None
    schema, leaf = getattr(cause, "object_type", None), key.rpartition(".")[2]
    if schema not in STORED.values() or leaf not in {f.name for f in fields(schema)}:
        return None
    return invalid(key, cause.value, expected(schema, leaf))
