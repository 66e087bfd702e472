"""Where each model family keeps its FFNs, and how to swap one for an EMoE layer.

An adapter reads a block's FFN into the canonical `DenseFFN` layout and installs the
converted module in its place. Adding a family is one entry in `FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from emoe_cli.moe.layer import DenseFFN


def _read_split(block: nn.Module) -> DenseFFN:
    """BERT-style: `intermediate` (W1 + act) and `output` (W2, dropout, residual, norm)."""
    inner, outer = block.intermediate, block.output
    return DenseFFN(w1=inner.dense.weight, b1=inner.dense.bias, w2=outer.dense.weight,
                    b2=outer.dense.bias, act=inner.intermediate_act_fn)


def _install_split(block: nn.Module, moe: nn.Module) -> None:
    # `output` keeps its dropout, residual and LayerNorm; its W2 now lives in `moe`.
    block.intermediate = moe
    block.output.dense = nn.Identity()


def _read_fc(block: nn.Module) -> DenseFFN:
    """ViT (transformers >= 5): `mlp.fc1`, `mlp.activation_fn`, `mlp.fc2`."""
    mlp = block.mlp
    return DenseFFN(w1=mlp.fc1.weight, b1=mlp.fc1.bias, w2=mlp.fc2.weight, b2=mlp.fc2.bias,
                    act=mlp.activation_fn)


def _read_conv1d(block: nn.Module) -> DenseFFN:
    """GPT-2: `Conv1D` stores weights as [in, out], so transpose into the Linear layout."""
    mlp = block.mlp
    return DenseFFN(w1=mlp.c_fc.weight.t(), b1=mlp.c_fc.bias, w2=mlp.c_proj.weight.t(),
                    b2=mlp.c_proj.bias, act=mlp.act, dropout=mlp.dropout)


def _read_gated(block: nn.Module) -> DenseFFN:
    """LLaMA family: `down(act(gate x) * up x)`; the gate rows are the keys."""
    mlp = block.mlp
    return DenseFFN(w1=mlp.gate_proj.weight, b1=mlp.gate_proj.bias, w2=mlp.down_proj.weight,
                    b2=mlp.down_proj.bias, act=mlp.act_fn, w_up=mlp.up_proj.weight,
                    b_up=mlp.up_proj.bias)


def _install_mlp(block: nn.Module, moe: nn.Module) -> None:
    block.mlp = moe


def _read_vit(block: nn.Module) -> DenseFFN:
    """ViT moved from BERT-style modules to `mlp.fc1/fc2` in transformers 5: read either."""
    return _read_split(block) if hasattr(block, "intermediate") else _read_fc(block)


def _install_vit(block: nn.Module, moe: nn.Module) -> None:
    (_install_split if hasattr(block, "intermediate") else _install_mlp)(block, moe)


# Where each canonical weight lived in the original block (for exporting back to dense).
SPLIT_NAMES = {"w1": "intermediate.dense", "w2": "output.dense"}
FC_NAMES = {"w1": "mlp.fc1", "w2": "mlp.fc2"}
CONV1D_NAMES = {"w1": "mlp.c_fc", "w2": "mlp.c_proj"}
GATED_NAMES = {"w1": "mlp.gate_proj", "w_up": "mlp.up_proj", "w2": "mlp.down_proj"}


@dataclass(frozen=True)
class FamilyAdapter:
    """How one model family stores its transformer blocks and FFNs.

    `dense_names(block)` maps the canonical weights (`w1`, `w_up`, `w2`) to the module names
    they had in the block; `transposed` marks GPT-2's Conv1D [in, out] storage.
    """

    model_types: tuple[str, ...]
    blocks: Callable[[nn.Module], nn.ModuleList]
    read: Callable[[nn.Module], DenseFFN]
    install: Callable[[nn.Module, nn.Module], None]
    dense_names: Callable[[nn.Module], dict[str, str]]
    transposed: bool = False


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.base_model.encoder.layer


def _vit_layers(model: nn.Module) -> nn.ModuleList:
    base = model.base_model
    return base.layers if hasattr(base, "layers") else base.encoder.layer


FAMILIES: dict[str, FamilyAdapter] = {
    "bert": FamilyAdapter(("bert", "roberta", "xlm-roberta", "electra"), _encoder_layers,
                          _read_split, _install_split, lambda b: SPLIT_NAMES),
    "gpt2": FamilyAdapter(("gpt2",), lambda m: m.base_model.h, _read_conv1d, _install_mlp,
                          lambda b: CONV1D_NAMES, transposed=True),
    "vit": FamilyAdapter(("vit", "deit"), _vit_layers, _read_vit, _install_vit,
                         lambda b: SPLIT_NAMES if hasattr(b, "intermediate") else FC_NAMES),
    "llama": FamilyAdapter(("llama", "mistral", "qwen2"), lambda m: m.base_model.layers,
                           _read_gated, _install_mlp, lambda b: GATED_NAMES),
}


def family_of(model_type: str | None) -> str | None:
    """The `FAMILIES` key of a Hugging Face `model_type`, or None when unsupported."""
    return next((name for name, adapter in FAMILIES.items()
                 if model_type in adapter.model_types), None)


def adapter_for(model: nn.Module) -> FamilyAdapter:
    """The adapter for `model`'s family, or a ValueError naming the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter in FAMILIES.values():
        if model_type in adapter.model_types:
            return adapter
    supported = sorted(t for a in FAMILIES.values() for t in a.model_types)
    raise ValueError(
        f"emoefy does not support model_type={model_type!r}; supported: {', '.join(supported)}"
    )
