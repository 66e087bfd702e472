"""LoRA through `peft`: the paper's three parameter-efficient rows as one `lora.mode` switch.

- `standard`: adapters on the family's usual attention projections in every block
  (the "LoRA" row). With `moe=emoe` this is the original code's EMoE-with-LoRA run: the
  converted FFNs stay frozen and only shape the forward pass through routing.
- `moe_layers`: adapters on the attention projections and the FFN of the blocks in
  `lora.layers` only, FFNs dense (the "LoRA limited to the MoE layers" baseline).
- `emoe`: the same adapters on the converted blocks, whose FFNs are EMoE layers: the
  adapters sit on the experts' `w1`/`w2`(/`w_up`), so only the converted layers are tuned.

Everything else is frozen except the classifier head (`modules_to_save`) and trained
routers (EMoE-learn, GMoE), which are part of the method. The avg-k router keeps
refreshing after each step from the merged keys `W1 + B A` (`moe.weights.effective_weight`):
routing follows what LoRA learns, as it follows the full weights in full fine-tuning.
"""

from __future__ import annotations

import warnings

from omegaconf import DictConfig
from torch import nn

from emoe_cli.config.naming import lora_enabled, lora_method  # noqa: F401 (importable here)
from emoe_cli.config.schema import LORA_MODES  # noqa: F401 (importable here)
from emoe_cli.errors import UserError
from emoe_cli.moe.adapters import adapter_for
from emoe_cli.moe.layer import EMoEFeedForward
from emoe_cli.moe.layers import resolve_layers

# peft's defaults cover most families; not ViT, whose attention projections are named
# BERT-style before transformers 5 and LLaMA-style from it.
EXTRA_ATTENTION_TARGETS = {"vit": ("query", "value", "q_proj", "v_proj"),
                           "deit": ("query", "value", "q_proj", "v_proj")}
CLASSIFIER_HEADS = ("classifier", "score")
# Name parts of the input embeddings, which the official LoRA runs never train.
EMBEDDINGS = frozenset({"embeddings", "wte", "wpe", "embed_tokens"})


def apply_lora_config(model: nn.Module, lora_cfg: DictConfig) -> nn.Module:
    """`apply_lora` with the `lora` config group's settings; bad ones become user errors."""
    try:
        return apply_lora(model, lora_cfg.mode, r=lora_cfg.r, alpha=lora_cfg.alpha,
                          dropout=lora_cfg.dropout, layers=lora_cfg.get("layers"),
                          train_blocks=lora_cfg.get("train_blocks") or (),
                          train_outside_blocks=lora_cfg.get("train_outside_blocks", False))
    except ValueError as error:
        raise UserError(f"lora: {error}") from error


def apply_lora(model: nn.Module, mode: str, r: int = 8, alpha: float = 16,
               dropout: float = 0.1, layers=None, train_blocks=(),
               train_outside_blocks: bool = False) -> nn.Module:
    """Wrap `model` in a peft LoRA model for `mode`; `layers` is used by `moe_layers`.

    `train_blocks` are fully fine-tuned next to the adapters: the original code's
    "LoRA + Block" baseline and its GMoE-with-LoRA runs (block 44 of GPT-2 XL).
    `train_outside_blocks` also trains what lies outside every block except the embeddings
    (GPT-2's final norm, BERT's pooler), as the official `--tune_moe_layers_only` runs do
    (`Language/search_glue_no_trainer_peft.py`, lines 442-491).
    """
    from peft import LoraConfig, get_peft_model

    blocks = adapter_for(model).blocks(model)
    full = _resolve(train_blocks, len(blocks), "lora.train_blocks") if train_blocks else []
    targets = lora_targets(model, mode, layers)
    heads = [name for name, _ in model.named_children() if name in CLASSIFIER_HEADS]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        modules_to_save=heads or None)
    with warnings.catch_warnings():  # peft picks the layout per layer (GPT-2's Conv1D)
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        peft_model = get_peft_model(model, config)
    for module in peft_model.modules():  # trained routers belong to the method
        if isinstance(module, EMoEFeedForward):
            module.router.requires_grad_(True)
    for index in full:
        blocks[index].requires_grad_(True)
    if train_outside_blocks:
        inside = {id(p) for block in blocks for p in block.parameters()}
        for name, parameter in model.named_parameters():
            parts = set(name.split("."))  # peft's frozen copy of the head stays frozen
            if id(parameter) not in inside and not parts & (EMBEDDINGS | {"original_module"}):
                parameter.requires_grad_(True)
    return peft_model


def lora_targets(model: nn.Module, mode: str, layers=None) -> list[str]:
    """Full names of the modules that get adapters (before peft wraps the model)."""
    if mode not in LORA_MODES:
        raise ValueError(f"lora mode {mode!r} is unknown; valid: {', '.join(LORA_MODES)}")
    blocks = adapter_for(model).blocks(model)
    if mode == "standard":
        chosen = range(len(blocks))
    elif mode == "moe_layers":
        chosen = _resolve(layers if layers is not None else "all", len(blocks), "lora.layers")
    else:
        chosen = [i for i, block in enumerate(blocks) if _emoe_layer(block) is not None]
        if not chosen:
            raise ValueError("lora mode 'emoe' needs converted layers; run emoefy first")
    names = {module: name for name, module in model.named_modules()}
    attention = attention_targets(model)
    targets = []
    for index in chosen:
        prefix = names[blocks[index]]
        targets += [f"{prefix}.{name}" for name, module in blocks[index].named_modules()
                    if name.rsplit(".", 1)[-1] in attention and _is_linear(module)]
        if mode != "standard":
            targets += [f"{prefix}.{name}" for name in ffn_module_names(model, blocks[index])]
    if not any(t.rsplit(".", 1)[-1] in attention for t in targets):
        raise ValueError(f"no attention projection named {', '.join(attention)} in the chosen "
                         "blocks; this model's layout is not one LoRA knows")
    return targets


def attention_targets(model: nn.Module) -> tuple[str, ...]:
    """The family's usual LoRA targets, as peft's defaults name them."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

    model_type = model.config.model_type
    targets = defaults.get(model_type) or EXTRA_ATTENTION_TARGETS.get(model_type)
    if not targets:
        raise ValueError(f"no default LoRA targets for model_type={model_type!r}")
    return tuple(targets)


def ffn_module_names(model: nn.Module, block: nn.Module) -> list[str]:
    """Names (inside `block`) of its FFN matrices: an EMoE layer's w1/w2/w_up, or the dense
    layers holding the weights the family adapter reads (matched by storage, so Conv1D's
    transposed view counts).
    """
    moe = _emoe_layer(block)
    if moe is not None:
        prefix = next(name for name, module in block.named_modules() if module is moe)
        return [f"{prefix}.{part}" for part in ("w1", "w_up", "w2")
                if getattr(moe, part) is not None]
    ffn = adapter_for(model).read(block)
    pointers = {w.data_ptr() for w in (ffn.w1, ffn.w2, ffn.w_up) if w is not None}
    return [name for name, module in block.named_modules()
            if _is_linear(module) and module.weight.data_ptr() in pointers]


def trainable_summary(model: nn.Module) -> dict:
    """Counts for the record: how much of the model LoRA actually trains."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "total_parameters": total,
            "trainable_fraction": trainable / max(total, 1)}


def _resolve(spec, num_blocks: int, key: str) -> list[int]:
    """`resolve_layers`, naming the lora key in its errors."""
    try:
        return resolve_layers(spec, num_blocks)
    except ValueError as error:
        raise ValueError(str(error).replace("moe.layers", key)) from error


def _emoe_layer(block: nn.Module) -> EMoEFeedForward | None:
    return next((m for m in block.modules() if isinstance(m, EMoEFeedForward)), None)


def _is_linear(module: nn.Module) -> bool:
    # GPT-2 keeps its projections in transformers' Conv1D (a weight [in, out] and a bias).
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
