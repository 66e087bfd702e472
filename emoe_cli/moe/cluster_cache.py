"""An on-disk cache of expert assignments, so a sweep never clusters the same layer twice.

Entries are keyed by a hash of the layer's key weights, the block index, N and the seed:
the same pre-trained layer split the same way is read back instead of re-clustered, and
any change to the weights gives a new key. An entry that does not load, or is not a balanced
split of these neurons, is recomputed and replaced (with a warning naming the file): a
truncated or edited file never breaks, or silently skews, the runs that share the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

DEFAULT_CACHE = "~/.cache/emoe/clusters"

log = logging.getLogger("emoe")


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
        expert_of_neuron, problem = read_entry(path, weight.shape[0], num_experts)
        if problem is None:
            return expert_of_neuron
        log.warning("cluster cache: %s %s; clustering again and replacing it", path, problem)
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


def read_entry(path: Path, d_ff: int, num_experts: int) -> tuple[torch.Tensor | None, str | None]:
    """(the assignment stored at `path`, None), or (None, why it cannot be used)."""
    try:
        loaded = torch.load(path, weights_only=True)
    except Exception as error:  # truncated, not a torch file, or a type weights_only refuses
        return None, f"cannot be read ({type(error).__name__})"
    problem = split_problem(loaded, d_ff, num_experts)
    return (loaded.long(), None) if problem is None else (None, problem)


def split_problem(loaded: object, d_ff: int, num_experts: int) -> str | None:
    """Why `loaded` is not an assignment of `d_ff` neurons to `num_experts` equal experts."""
    if not isinstance(loaded, torch.Tensor):
        return f"holds a {type(loaded).__name__}, not a tensor"
    if tuple(loaded.shape) != (d_ff,):
        return f"has shape {tuple(loaded.shape)}, expected ({d_ff},)"
    if loaded.dtype.is_floating_point or loaded.dtype.is_complex or loaded.dtype == torch.bool:
        return f"has dtype {loaded.dtype}, expected integer expert ids"
    if d_ff and (int(loaded.min()) < 0 or int(loaded.max()) >= num_experts):
        return (f"has expert ids {int(loaded.min())}..{int(loaded.max())}, expected "
                f"0..{num_experts - 1}")
    sizes = torch.bincount(loaded.long(), minlength=num_experts)
    if bool((sizes != d_ff // num_experts).any()):
        return (f"gives experts {int(sizes.min())}..{int(sizes.max())} neurons, expected "
                f"{d_ff // num_experts} each")
    return None
