"""NoisyTune, the paper's other baseline: perturb the pre-trained weights before fine-tuning.

Each weight tensor W gets uniform noise (U(0, 1) - 0.5) · λ · std(W), so the perturbation
scales with how spread that tensor's values already are (λ = 0.15 in the original scripts).
The classifier head (`classifier`, GPT-2's `score`) is left as initialised, as the official
script does (`Language/search_glue_no_trainer.py`, lines 441-445).
"""

from __future__ import annotations

import torch
from torch import nn

HEAD_NAMES = ("classifier", "score")


@torch.no_grad()
def add_uniform_noise(model: nn.Module, noise_lambda: float, seed: int = 0) -> nn.Module:
    """Perturb every parameter of `model` in place except the classifier head's; tensors of
    one value (no std) are left."""
    if noise_lambda < 0:
        raise ValueError(f"noise_lambda={noise_lambda} is invalid; valid: a number >= 0")
    if noise_lambda == 0:
        return model
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if parameter.numel() < 2 or any(head in name.split(".") for head in HEAD_NAMES):
            continue
        noise = torch.rand(parameter.shape, generator=generator) - 0.5
        scale = noise_lambda * parameter.float().std()
        parameter.add_((noise.to(parameter.device) * scale).to(parameter.dtype))
    return model
