"""`emoefy`: convert a Hugging Face model's FFNs into EMoE layers, in place."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emoe_cli.moe.adapters import adapter_for
from emoe_cli.moe.clustering import balanced_kmeans
from emoe_cli.moe.execution import EXECUTIONS
from emoe_cli.moe.layer import DenseFFN, EMoEFeedForward
from emoe_cli.moe.layers import resolve_layers
from emoe_cli.moe.routers import ROUTERS

SPLITS = ("cluster", "random")


def emoefy(
    model: nn.Module,
    num_experts: int,
    top_k: int,
    layers: str | int | Sequence[int] = "all",
    gate: str = "avg_k",
    seed: int = 0,
    split: str = "cluster",
    execution: str = "auto",
    **gate_options,
) -> nn.Module:
    """Split the FFNs of `layers` into `num_experts` experts and route each token to `top_k`.

    Adds no parameters: experts are groups of the FFN's own neurons, found by balanced
    k-means on the L2-normalised key rows (`split="random"` for the random-partition
    ablation). `gate_options` go to the router (avg_k: momentum, normalize; learned: init,
    noise; cosine: proj_dim, temperature, noise). `execution` (`auto`, `masked`, `sparse`)
    picks how the layers compute the same function. Returns `model` for chaining.
    """
    if gate not in ROUTERS:
        raise ValueError(f"gate={gate!r} is unknown; valid: {', '.join(sorted(ROUTERS))}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; valid: {', '.join(SPLITS)}")
    if execution not in EXECUTIONS:
        raise ValueError(f"execution={execution!r} is unknown; valid: {', '.join(EXECUTIONS)}")
    if not 1 <= top_k <= num_experts:
        raise ValueError(f"top_k={top_k} must be between 1 and num_experts={num_experts}")
    adapter = adapter_for(model)
    blocks = adapter.blocks(model)
    for index in resolve_layers(layers, len(blocks)):
        ffn = adapter.read(blocks[index])
        if ffn.d_ff % num_experts:
            raise ValueError(
                f"num_experts={num_experts} does not divide the FFN size d_ff={ffn.d_ff} of "
                f"layer {index}; valid: a divisor of {ffn.d_ff}"
            )
        expert_of_neuron = split_neurons(ffn, num_experts, seed, split)
        router = make_router(gate, num_experts, ffn.w1.shape[1], gate_options)
        moe = EMoEFeedForward(ffn, expert_of_neuron, top_k, router, execution).to(ffn.w1.device)
        adapter.install(blocks[index], moe)
    return model


def make_router(gate: str, num_experts: int, hidden_size: int, options: dict) -> nn.Module:
    """Build the `gate` router, naming any option it does not take."""
    try:
        return ROUTERS[gate](num_experts, hidden_size, **options)
    except TypeError as error:
        raise ValueError(f"gate={gate!r} got an option it does not take: {error}") from error


def check_fits(model_config, num_experts: int, layers: str | int | Sequence[int]) -> None:
    """Check `layers` and `num_experts` against a model's config before loading its weights."""
    d_ff = (getattr(model_config, "intermediate_size", None)
            or getattr(model_config, "n_inner", None) or 4 * model_config.hidden_size)
    resolve_layers(layers, model_config.num_hidden_layers)
    if d_ff % num_experts:
        raise ValueError(f"num_experts={num_experts} does not divide the FFN size d_ff={d_ff}; "
                         f"valid: a divisor of {d_ff}")


def split_neurons(ffn: DenseFFN, num_experts: int, seed: int, split: str) -> torch.Tensor:
    """The expert of every intermediate neuron, in the original neuron order."""
    if split == "random":
        generator = torch.Generator().manual_seed(seed)
        permutation = torch.randperm(ffn.d_ff, generator=generator)
        expert_of_neuron = torch.empty(ffn.d_ff, dtype=torch.long)
        expert_of_neuron[permutation] = torch.arange(ffn.d_ff) // (ffn.d_ff // num_experts)
        return expert_of_neuron
    keys = F.normalize(ffn.w1.detach().float(), dim=-1)
    return balanced_kmeans(keys, num_experts, seed=seed)


def emoe_modules(model: nn.Module) -> Iterator[EMoEFeedForward]:
    """Every converted FFN of `model`."""
    return (m for m in model.modules() if isinstance(m, EMoEFeedForward))


def refresh_routers(model: nn.Module) -> None:
    """Recompute every avg-k router from its current keys; call after each optimiser step."""
    for module in emoe_modules(model):
        module.refresh_router()


def attach_router_refresh(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Refresh `model`'s routers after every `optimizer.step()`; returns the hook handle."""
    return optimizer.register_step_post_hook(lambda *_: refresh_routers(model))
