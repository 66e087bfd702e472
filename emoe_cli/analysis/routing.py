"""Expert-selection counts per converted layer over a split: the data behind the paper's
routing analysis (which experts a layer uses, and how differently for train and test data).

Counting is passive: forward pre-hooks ask each EMoE layer's own `select_experts` (its
`route`) which experts a token gets, so whatever execution path `forward` takes, the
counts are the router's choices. Padding tokens are left out using the batch's
`attention_mask`, read by a hook on the model itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from emoe_cli.moe.layer import EMoEFeedForward
from emoe_cli.tracking.records import write_json_atomic

ROUTING_FILE = "routing.json"


def layer_index(module_name: str) -> int:
    """The block index in a converted FFN's name (`...layer.10.intermediate` → 10)."""
    numbers = re.findall(r"\.(\d+)(?=\.|$)", module_name)
    if not numbers:
        raise ValueError(f"cannot tell the block index of module {module_name!r}")
    return int(numbers[-1])


class RoutingCounter:
    """Per converted layer: how often each expert was selected, and over how many tokens."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = {layer_index(name): module for name, module in model.named_modules()
                       if isinstance(module, EMoEFeedForward)}
        self.counts = {i: torch.zeros(m.num_experts, dtype=torch.long)
                       for i, m in self.layers.items()}
        self.tokens = dict.fromkeys(self.layers, 0)
        self._token_mask: torch.Tensor | None = None

    @contextmanager
    def recording(self) -> Iterator[RoutingCounter]:
        """Count every forward pass of the model inside the `with` block."""
        handles = [self.model.register_forward_pre_hook(self._read_mask, with_kwargs=True)]
        handles += [module.register_forward_pre_hook(self._counter(index))
                    for index, module in self.layers.items()]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            self._token_mask = None

    def _read_mask(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        self._token_mask = None if mask is None else mask.reshape(-1).bool()

    def _counter(self, index: int):
        def count(module: EMoEFeedForward, args) -> None:
            hidden = args[0].reshape(-1, args[0].shape[-1])
            with torch.no_grad():
                chosen = module.select_experts(hidden)
            mask = self._token_mask
            if mask is not None and mask.numel() == chosen.shape[0]:
                chosen = chosen[mask.to(chosen.device)]
            self.counts[index] += torch.bincount(chosen.reshape(-1).cpu(),
                                                 minlength=module.num_experts)
            self.tokens[index] += chosen.shape[0]
        return count

    def result(self) -> dict[str, dict]:
        """`{layer: {"tokens": n, "counts": [per expert]}}`, layers as strings (JSON keys)."""
        return {str(i): {"tokens": int(self.tokens[i]), "counts": self.counts[i].tolist()}
                for i in sorted(self.layers)}


@torch.no_grad()
def count_routing(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]],
                  device: torch.device | str | None = None) -> dict[str, dict]:
    """Run `model` (in eval mode) over `batches` and return its expert-selection counts."""
    counter = RoutingCounter(model)
    was_training = model.training
    model.eval()
    try:
        with counter.recording():
            for batch in batches:
                if device is not None:
                    batch = {k: v.to(device) for k, v in batch.items()}
                model(**{k: v for k, v in batch.items() if k != "labels"})
    finally:
        model.train(was_training)
    return counter.result()


def layer_settings(model: nn.Module) -> dict[str, dict]:
    """Each converted layer's N and k, needed to turn counts into shares."""
    return {str(layer_index(name)): {"num_experts": m.num_experts, "top_k": m.top_k}
            for name, m in model.named_modules() if isinstance(m, EMoEFeedForward)}


def record_routing(model: nn.Module, splits: Mapping[str, Iterable], output_dir: str | Path,
                   device=None, meta: dict | None = None) -> Path:
    """Count every split (e.g. `train`, `id`, `ood/imdb`) and write `routing.json`."""
    started = time.perf_counter()
    payload = {**(meta or {}), "layers": layer_settings(model),
               "splits": {name: count_routing(model, batches, device)
                          for name, batches in splits.items()}}
    payload["seconds"] = time.perf_counter() - started  # what analysis.routing costs a run
    path = Path(output_dir) / ROUTING_FILE
    write_json_atomic(path, payload)
    return path


def routing_splits(data, make_loader, cfg) -> dict:
    """The splits a run counts: a fixed subset of `train` (`analysis.routing_train_samples`),
    the ID split and every OOD set, each as `make_loader` batches them.
    """
    from emoe_cli.data.tasks import cap

    train = cap(data.train, cfg.analysis.routing_train_samples, cfg.data.subset_seed)
    return {"train": make_loader(train),
            "id": make_loader(data.validation),
            **{f"ood/{name}": make_loader(split) for name, split in data.ood.items()}}
