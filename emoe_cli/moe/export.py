"""Deploy as dense: write a fine-tuned EMoE model back in its original dense layout.

EMoE's gains come from training through the sparse structure; at k = N the converted
layer is the dense FFN. So the fine-tuned weights, with neurons put back in their
original order under their original names, form a plain Hugging Face model that loads
without `emoe_cli`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emoe_cli.moe.adapters import adapter_for
from emoe_cli.moe.layer import EMoEFeedForward


def dense_weights(layer: EMoEFeedForward) -> dict[str, torch.Tensor | None]:
    """The layer's canonical weights in the original neuron order (None where absent).

    Repeated experts (GMoE's `expert_repeat`) have no dense form: their copies are
    averaged, which `save_emoe` uses only as a placeholder next to the exact state.
    """
    restore = torch.argsort(layer.neuron_order).to(layer.w1.weight.device)
    copies = layer.spec.expert_repeat

    def rows(tensor: torch.Tensor | None) -> torch.Tensor | None:  # neurons along dim 0
        if tensor is None:
            return None
        tensor = tensor.detach()[restore]
        return tensor.view(copies, -1, *tensor.shape[1:]).mean(dim=0)

    w2 = layer.w2.weight.detach()[:, restore]
    weights = {"w1.weight": rows(layer.w1.weight), "w1.bias": rows(layer.w1.bias),
               "w2.weight": w2.view(w2.shape[0], copies, -1).mean(dim=1),
               "w2.bias": None if layer.w2.bias is None else layer.w2.bias.detach()}
    if layer.w_up is not None:
        weights["w_up.weight"] = rows(layer.w_up.weight)
        weights["w_up.bias"] = rows(layer.w_up.bias)
    return weights


def converted_layers(model: nn.Module) -> list[tuple[int, str, EMoEFeedForward]]:
    """(block index, module name, layer) for every converted FFN, in block order."""
    blocks = adapter_for(model).blocks(model)
    names = {id(module): name for name, module in model.named_modules()}
    found = []
    for index, block in enumerate(blocks):
        for module in block.modules():
            if isinstance(module, EMoEFeedForward):
                found.append((index, names[id(module)], module))
    return found


def dense_state_dict(model: nn.Module, average_repeats: bool = False) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with every converted FFN back under its family's dense names.

    Router state and the neuron bookkeeping are dropped: the result is the dense model's.
    Layers with repeated experts raise unless `average_repeats`.
    """
    adapter = adapter_for(model)
    blocks = adapter.blocks(model)
    names = {id(module): name for name, module in model.named_modules()}
    state = model.state_dict()
    for index, layer_name, layer in converted_layers(model):
        if layer.spec.expert_repeat > 1 and not average_repeats:
            raise ValueError(f"layer {index} has expert_repeat={layer.expert_repeat}: its "
                             "expert copies add parameters and have no dense layout; valid for "
                             "a dense export: expert_repeat=1")
        state = {k: v for k, v in state.items() if not k.startswith(layer_name + ".")}
        block_name = names[id(blocks[index])]
        targets = adapter.dense_names(blocks[index])
        for key, tensor in dense_weights(layer).items():
            if tensor is None:
                continue
            canonical, kind = key.split(".")
            if adapter.transposed and kind == "weight":
                tensor = tensor.t()
            state[f"{block_name}.{targets[canonical]}.{kind}"] = tensor.contiguous()
    return state


def export_dense(model: nn.Module, path: str | Path, tokenizer=None,
                 average_repeats: bool = False) -> Path:
    """Save `model` (EMoE or not) as a plain dense Hugging Face folder; returns the path."""
    path = Path(path)
    model.save_pretrained(path, state_dict=dense_state_dict(model, average_repeats))
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path
