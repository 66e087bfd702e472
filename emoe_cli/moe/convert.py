"""`emoefy`: convert a Hugging Face model's FFNs into EMoE layers, in place."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from emoe_cli.engine import EXECUTIONS
from emoe_cli.moe.adapters import FAMILIES, adapter_for
from emoe_cli.moe.choices import SELECTIONS, SPLITS, check_routing
from emoe_cli.moe.cluster_cache import cached_split
from emoe_cli.moe.clustering import balanced_kmeans
from emoe_cli.moe.layer import DenseFFN, EMoEFeedForward
from emoe_cli.moe.layers import resolve_layers
from emoe_cli.moe.profile import Profile, check_family, check_values, resolve_profile
from emoe_cli.moe.routers import ROUTERS, Router
from emoe_cli.moe.spec import LayerSpec


def emoefy(
    model: nn.Module,
    num_experts: int,
    top_k: int,
    layers: str | int | Sequence[int] = "all",
    gate: str = "avg_k",
    seed: int = 0,
    split: str = "cluster",
    cluster_cache: str | Path | None = None,
    assignments: Mapping[int, torch.Tensor] | None = None,
    selection: str = "top",
    select: str = "gate",
    capacity_factor: float | None = None,
    expert_repeat: int = 1,
    execution: str = "auto",
    profile: str | Profile = "clean",
    **gate_options,
) -> nn.Module:
    """Split the FFNs of `layers` into `num_experts` experts and route each token to `top_k`.

    Adds no parameters: experts are groups of the FFN's own neurons, found by balanced
    k-means on the L2-normalised key rows (`split="random"` for the random-partition
    ablation), cached under `cluster_cache` when given. `assignments` (block index →
    expert_of_neuron) skips the split, e.g. when reloading a saved model. `selection` picks
    which experts a token gets (`top`, the `other` N - k, `bottom`); `select` what scores
    them for avg_k (see `activation_scores`); `capacity_factor` drops tokens beyond each
    expert's capacity (None: dropless). `expert_repeat` > 1 is GMoE's option: every expert
    gets its own copy of that many consecutive groups (new parameters; trained gates only;
    `repeat_experts`). `gate_options` go to
    the router (avg_k: momentum, normalize; learned: init, noise; cosine: proj_dim,
    temperature, noise). `execution` (`auto`, `masked`, `sparse`) picks how the layers
    compute the same function. `profile` (`official`, `clean` or a `Profile`) adds the
    official code's layer extras (see `moe/profile.py`); `clean` adds none. Returns `model`
    for chaining. `emoefy_spec` takes the same settings as one `LayerSpec`.
    """
    spec = LayerSpec(num_experts=num_experts, top_k=top_k, gate=gate,
                     gate_options=dict(gate_options), selection=selection, select=select,
                     capacity_factor=capacity_factor, expert_repeat=expert_repeat,
                     profile=resolve_profile(profile))
    return emoefy_spec(model, spec, layers, seed=seed, split=split, cluster_cache=cluster_cache,
                       assignments=assignments, execution=execution)


def emoefy_spec(
    model: nn.Module,
    spec: LayerSpec,
    layers: str | int | Sequence[int] = "all",
    seed: int = 0,
    split: str = "cluster",
    cluster_cache: str | Path | None = None,
    assignments: Mapping[int, torch.Tensor] | None = None,
    execution: str = "auto",
) -> nn.Module:
    """`emoefy` with the layer described by one `LayerSpec`; the other arguments say where the
    experts come from and how the layers compute (see `emoefy`). Returns `model`."""
    check_spec(spec)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; valid: {', '.join(SPLITS)}")
    if execution not in EXECUTIONS:
        raise ValueError(f"execution={execution!r} is unknown; valid: {', '.join(EXECUTIONS)}")
    adapter = adapter_for(model)
    family = next(name for name, entry in FAMILIES.items() if entry is adapter)
    check_family(spec.profile, family)
    blocks = adapter.blocks(model)
    num_experts = spec.num_experts
    for index in resolve_layers(layers, len(blocks)):
        ffn = adapter.read(blocks[index])
        if ffn.d_ff % num_experts:
            raise ValueError(
                f"num_experts={num_experts} does not divide the FFN size d_ff={ffn.d_ff} of "
                f"layer {index}; valid: a divisor of {ffn.d_ff}"
            )
        if assignments is not None and index in assignments:
            expert_of_neuron = torch.as_tensor(assignments[index], dtype=torch.long)
        else:
            expert_of_neuron = assign_experts(ffn, num_experts, seed, split, index, cluster_cache)
        ffn, expert_of_neuron = repeat_experts(ffn, expert_of_neuron, spec.expert_repeat)
        if not spec.profile.moe_output_dropout:  # the official GPT-2 layer has none
            ffn.dropout = None
        router = make_router(spec, ffn.w1.shape[1])
        moe = EMoEFeedForward(ffn, expert_of_neuron, router=router, execution=execution,
                              spec=spec, dropout_before=family != "vit")  # ViT: after the act
        adapter.install(blocks[index], moe.to(ffn.w1.device))
    return model


def check_spec(spec: LayerSpec) -> None:
    """Each setting of `spec` against the others: a clear error before any layer is built."""
    if spec.gate not in ROUTERS:
        raise ValueError(f"gate={spec.gate!r} is unknown; valid: {', '.join(sorted(ROUTERS))}")
    check_repeat(spec.gate, spec.expert_repeat, spec.num_experts)
    if not 1 <= spec.top_k <= spec.num_experts:
        raise ValueError(f"top_k={spec.top_k} must be between 1 and "
                         f"num_experts={spec.num_experts}")
    check_selection(spec.selection, spec.top_k, spec.num_experts)
    check_routing(spec.gate, spec.select, spec.capacity_factor)
    check_values(spec.profile)
    if spec.profile.token_dropping and spec.capacity_factor is not None:
        raise ValueError(f"capacity_factor={spec.capacity_factor} and profile.token_dropping "
                         "both drop tokens; valid: capacity_factor=None under token dropping "
                         "(its factor is profile.capacity_factor)")


def check_selection(selection: str, top_k: int, num_experts: int) -> None:
    if selection not in SELECTIONS:
        raise ValueError(f"selection={selection!r} is unknown; valid: {', '.join(SELECTIONS)}")
    if selection == "other" and top_k == num_experts:
        raise ValueError(f"selection='other' routes to the num_experts - top_k experts outside "
                         f"the top-k, none when top_k={top_k}; valid: top_k < {num_experts}")


def check_repeat(gate: str, expert_repeat: int, num_experts: int) -> None:
    if (not isinstance(expert_repeat, int) or isinstance(expert_repeat, bool)
            or not 1 <= expert_repeat <= num_experts):
        raise ValueError(f"expert_repeat={expert_repeat!r} is invalid; valid: an integer from 1 "
                         f"to num_experts={num_experts} (each expert joins that many groups)")
    if expert_repeat > 1 and not getattr(ROUTERS[gate], "weighted", False):
        raise ValueError(f"expert_repeat={expert_repeat} makes identical copies that gate="
                         f"{gate!r} would score alike; valid: a trained gate (cosine, learned)")


def repeat_experts(ffn: DenseFFN, expert_of_neuron: torch.Tensor,
                   repeat: int) -> tuple[DenseFFN, torch.Tensor]:
    """GMoE's expert repeat as the official code builds it (`Language/moe_utils.py`, lines
    110-124): expert e owns the neurons of groups e, e + 1, ..., e + repeat - 1 (mod N), its
    own copy of them. Stored as `repeat` tiles of the FFN where tile r gives neuron n to
    expert (group(n) - r) mod N, so tile 0 keeps the original assignment. With repeat = N
    every expert is a copy of the whole FFN (the official GMoE runs: 6 of 6, 8 of 8)."""
    if repeat == 1:
        return ffn, expert_of_neuron

    def tile(tensor: torch.Tensor | None, dim: int = 0) -> torch.Tensor | None:
        return None if tensor is None else torch.cat([tensor.detach()] * repeat, dim=dim)

    copies = DenseFFN(w1=tile(ffn.w1), b1=tile(ffn.b1), w2=tile(ffn.w2, dim=1), b2=ffn.b2,
                      act=ffn.act, dropout=ffn.dropout, w_up=tile(ffn.w_up), b_up=tile(ffn.b_up))
    num_experts = int(expert_of_neuron.max()) + 1
    return copies, torch.cat([(expert_of_neuron - r) % num_experts for r in range(repeat)])


def make_router(spec: LayerSpec, hidden_size: int) -> Router:
    """Build the spec's router, naming any option it does not take. Under a profile with router
    noise, the profile's noise replaces the router's own."""
    try:
        router = ROUTERS[spec.gate](spec.num_experts, hidden_size, **spec.gate_options)
    except TypeError as error:
        raise ValueError(f"gate={spec.gate!r} got an option it does not take: {error}") from error
    if spec.profile.router_noise > 0:
        router.noise = 0.0
    return router


def check_fits(model_config, num_experts: int, layers: str | int | Sequence[int]) -> None:
    """Check `layers` and `num_experts` against a model's config before loading its weights."""
    d_ff = (getattr(model_config, "intermediate_size", None)
            or getattr(model_config, "n_inner", None) or 4 * model_config.hidden_size)
    resolve_layers(layers, model_config.num_hidden_layers)
    if d_ff % num_experts:
        raise ValueError(f"num_experts={num_experts} does not divide the FFN size d_ff={d_ff}; "
                         f"valid: a divisor of {d_ff}")


def assign_experts(ffn: DenseFFN, num_experts: int, seed: int, split: str, index: int,
                   cluster_cache: str | Path | None) -> torch.Tensor:
    """`split_neurons`, read from / written to the cluster cache when one is given."""
    if split != "cluster" or cluster_cache is None:
        return split_neurons(ffn, num_experts, seed, split)
    return cached_split(ffn.w1, num_experts, seed, index, cluster_cache,
                        lambda: split_neurons(ffn, num_experts, seed, split))


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


def balance_loss(moe_layers) -> torch.Tensor | float:
    """Sum of the load-balancing losses the trained routers left in this forward."""
    return sum(m.aux_loss for m in moe_layers if m.aux_loss is not None)


def attach_router_refresh(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Refresh `model`'s routers after every `optimizer.step()`; returns the hook handle."""
    return optimizer.register_step_post_hook(lambda *_: refresh_routers(model))
