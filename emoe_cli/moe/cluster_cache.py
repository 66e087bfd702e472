"""An on-disk cache of expert assignments, so a sweep never clusters the same layer twice.

Entries are keyed by a hash of the layer's key weights, the block index, N and the seed:
the same pre-trained layer split the same way is read back instead of re-clustered, and
any change to the weights gives a new key.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

DEFAULT_CACHE = "~/.cache/emoe/clusters"


def weights_hash(weight: torch.Tensor) -> str:
    """A short content hash of a weight matrix (its dtype and shape included)."""
    tensor = weight.detach().cpu().contiguous()
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_path(cache_dir: str | Path, weight: torch.Tensor, layer: int, num_experts: int,
               seed: int) -> Path:
    name = f"{weights_hash(weight)}-layer{layer}-N{num_experts}-seed{seed}.pt"
    return Path(cache_dir).expanduser() / name


def cached_split(weight: torch.Tensor, num_experts: int, seed: int, layer: int,
                 cache_dir: str | Path, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The cached expert_of_neuron for these keys, else `compute()` and store it."""
    path = cache_path(cache_dir, weight, layer, num_experts, seed)
    if path.is_file():
        expert_of_neuron = torch.load(path, weights_only=True)
        if expert_of_neuron.shape == (weight.shape[0],):
            return expert_of_neuron
    expert_of_neuron = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:  # write then rename: parallel sweep jobs never read half a file
        torch.save(expert_of_neuron.cpu(), temp)
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    return expert_of_neuron
