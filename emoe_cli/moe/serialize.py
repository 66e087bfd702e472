"""Save a converted, fine-tuned model as a Hugging Face folder and rebuild it exactly.

The folder holds the weights in the original dense layout (so plain `transformers` loads it
as the dense model), plus `emoe.json` (each converted layer's `LayerSpec` and
`expert_of_neuron`) and `emoe_routers.safetensors` (router state: avg-k keys under
momentum, trained routers' weights; the whole layer where GMoE's repeated experts have
no dense layout). `load_emoe` loads the dense model and converts it
again from those, which reproduces the saved model's logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn

from emoe_cli.moe.convert import emoefy_spec
from emoe_cli.moe.export import converted_layers, export_dense
from emoe_cli.moe.spec import saved_entry, spec_from_saved

SPEC_FILE = "emoe.json"
ROUTERS_FILE = "emoe_routers.safetensors"
FORMAT_VERSION = 1


def save_emoe(model: nn.Module, path: str | Path, tokenizer=None) -> Path:
    """Write `model` to `path`: dense-layout weights, `emoe.json`, router state."""
    path = export_dense(model, path, tokenizer, average_repeats=True)
    layers, routers = [], {}
    for index, _, layer in converted_layers(model):
        copies = layer.spec.expert_repeat
        layers.append({
            "index": index, **saved_entry(layer.spec),
            "expert_of_neuron": layer.expert_of_neuron[:len(layer.expert_of_neuron) // copies]
            .tolist(),
        })
        # the router, or for repeated experts (no dense layout) the whole layer
        state = layer.state_dict() if copies > 1 else layer.router.state_dict(prefix="router.")
        for name, tensor in state.items():
            routers[f"{index}.{name}"] = tensor.detach().cpu().contiguous()
    spec = {"format": FORMAT_VERSION, "layers": layers}
    (path / SPEC_FILE).write_text(json.dumps(spec, indent=1, allow_nan=False))
    save_file(routers, str(path / ROUTERS_FILE))
    return path


def is_emoe_folder(path: str | Path) -> bool:
    return (Path(path) / SPEC_FILE).is_file()


def load_emoe(path: str | Path, model_class=None, **from_pretrained_kwargs) -> nn.Module:
    """Rebuild a model saved by `save_emoe` (class from its config unless `model_class`)."""
    path = Path(path)
    if not is_emoe_folder(path):
        raise ValueError(f"{path} has no {SPEC_FILE}; valid: a folder written by save_emoe "
                         "(a plain Hugging Face folder loads with transformers directly)")
    spec = json.loads((path / SPEC_FILE).read_text())
    if spec.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path / SPEC_FILE}: format {spec.get('format')!r} is not supported; "
                         f"valid: {FORMAT_VERSION}")
    if model_class is None:
        config = transformers.AutoConfig.from_pretrained(path)
        model_class = getattr(transformers, (config.architectures or ["AutoModel"])[0])
    model = model_class.from_pretrained(path, **from_pretrained_kwargs)
    for entry in spec["layers"]:
        emoefy_spec(model, spec_from_saved(entry), layers=[entry["index"]],
                    assignments={entry["index"]: torch.tensor(entry["expert_of_neuron"])})
    routers = load_file(str(path / ROUTERS_FILE))
    for index, _, layer in converted_layers(model):
        prefix = f"{index}."
        state = {k[len(prefix):]: v for k, v in routers.items() if k.startswith(prefix)}
        loaded = layer.load_state_dict(state, strict=False)  # the router, or the whole layer
        if loaded.unexpected_keys:
            raise ValueError(f"{path / ROUTERS_FILE}: layer {index} does not match its saved "
                             f"state (unexpected {loaded.unexpected_keys[:3]})")
    return model
