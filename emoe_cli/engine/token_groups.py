"""Split a batch's tokens into groups that route alike, so each group masks its own hot experts and
fewer experts are dear either way (measurements: `docs/performance.md`, "Token groups").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from emoe_cli.engine.cost_model import expert_costs

MAX_DEPTH = 2  # at most 2 ** MAX_DEPTH groups
MIN_GROUP_TOKENS = 256
SPLIT_COST = 0.02  # per token of the group split, as a fraction of a token through the dense FFN


@dataclass
class TokenSplit:
    """Groups of tokens and the pairs each group sends to each expert."""

    groups: list[torch.Tensor]  # token indices of each group; together, every token once
    counts: torch.Tensor  # [groups, experts] pairs of non-zero weight
    cost: float | None = None  # the sparse path's modelled time, as a fraction of dense

    @property
    def sizes(self) -> torch.Tensor:
        """Tokens per group."""
        return torch.tensor([len(group) for group in self.groups], device=self.counts.device)

    def label(self) -> torch.Tensor:
        """The group of every token."""
        label = torch.empty(sum(map(len, self.groups)), dtype=torch.long,
                            device=self.counts.device)
        for index, group in enumerate(self.groups):
            label[group] = index
        return label


def one_group(chosen: torch.Tensor, weights: torch.Tensor, num_experts: int) -> TokenSplit:
    """Every token in one group (no cost modelled)."""
    counts = _routed(chosen, weights, num_experts).sum(0, keepdim=True)
    return TokenSplit([torch.arange(chosen.shape[0], device=chosen.device)], counts)


def split_tokens(chosen: torch.Tensor, weights: torch.Tensor, num_experts: int,
                 expert_size: int, training: bool, max_depth: int | None = None) -> TokenSplit:
    """Split the tokens of `route()`'s output ([tokens, k] indices and weights) by routing.

    Pairs of weight 0 (dropped by a capacity limit) count as not chosen. With
    `max_depth = 0` (default: `MAX_DEPTH`), or when no split pays, there is one group of
    every token.
    """
    tokens = chosen.shape[0]
    routed = _routed(chosen, weights, num_experts)

    def cost_of(counts: torch.Tensor, size: torch.Tensor | float) -> torch.Tensor:
        """Modelled time of groups with these pair counts, in tokens through the dense FFN."""
        shares = counts / torch.as_tensor(size).clamp(min=1).unsqueeze(-1)
        return size * expert_costs(shares, expert_size, training).mean(-1)

    groups = [torch.arange(tokens, device=chosen.device)]
    counts = [routed.sum(0)]
    overhead = 0.0
    for _ in range(MAX_DEPTH if max_depth is None else max_depth):
        next_groups, next_counts = [], []
        for group, count in zip(groups, counts):
            rows = routed if len(group) == tokens else routed[group]
            parts = _best_split(rows, count, cost_of)
            if parts is None:
                next_groups.append(group)
                next_counts.append(count)
                continue
            inside, inside_count = parts
            next_groups += [group[inside], group[~inside]]
            next_counts += [inside_count, count - inside_count]
            overhead += SPLIT_COST * len(group)
        if len(next_groups) == len(groups):
            break
        groups, counts = next_groups, next_counts
    split = TokenSplit(groups, torch.stack(counts))
    split.cost = (float(cost_of(split.counts, split.sizes).sum()) + overhead) / max(tokens, 1)
    return split


def _routed(chosen: torch.Tensor, weights: torch.Tensor, num_experts: int) -> torch.Tensor:
    """[tokens, experts]: 1 where a token chose an expert with a non-zero weight."""
    return torch.zeros(chosen.shape[0], num_experts, device=chosen.device).scatter_(
        1, chosen, (weights != 0).float())


def _best_split(rows: torch.Tensor, count: torch.Tensor, cost_of):
    """The cheapest split of a group ([tokens, experts] 0/1 routing, `count` its column
    sums) into the tokens that chose one expert and the rest: the inside mask and the
    inside pair counts, or None when no split saves more than it costs."""
    size = rows.shape[0]
    if size < 2 * MIN_GROUP_TOKENS:
        return None
    together = rows.T @ rows  # [e, f]: tokens that chose both e and f
    inside = count  # tokens in the part "chose e", per candidate e (the diagonal)
    outside = size - inside
    cost = cost_of(together, inside) + cost_of(count - together, outside)
    cost[(inside < MIN_GROUP_TOKENS) | (outside < MIN_GROUP_TOKENS)] = float("inf")
    best = int(cost.argmin())
    if float(cost[best]) + SPLIT_COST * size >= float(cost_of(count, size)):
        return None
    return rows[:, best] > 0, together[best]
