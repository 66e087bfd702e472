"""Balanced k-means: split FFN key rows into equal-size groups, the experts of EMoE.

The quality that matters is the mean cosine similarity of each key to its group's centroid.
For unit rows that equals `sum_c |S_c| / n`, where `S_c` is the sum of the rows of group `c`,
so the refinement below climbs that sum directly. Each step scores every (row, group) pair by
the exact change of `|S_c|` when that one row joins (or, for its own group, leaves) the group,
a Hartigan-style score that, unlike Lloyd's dot product with a centroid the row itself pulls
on, does not make rows stick to their current group. The rows are then split into equal groups
by a balanced assignment: per-group prices (the dual of the size constraints) are moved so that
each group is the first choice of about `n / k` rows, and a greedy rounding in order of regret
makes the sizes exact. Everything is a few matrix products and sorts of an `[n, k]` matrix, so a
layer of 11008 keys takes seconds where an exact assignment (O(n^3)) takes minutes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_SEED_SAMPLE = 2048  # k-means++ seeds from at most this many rows: enough for k <= a few hundred
_FIRST_PRICE_STEPS = 10  # price steps for the first split, whose prices start from zero
_PRICE_STEPS = 1  # price steps per refinement step, warm-started from the previous prices


def balanced_kmeans(
    x: torch.Tensor,
    num_clusters: int,
    seed: int = 0,
    max_iters: int = 30,
    tol: float = 1e-3,
    patience: int = 2,
) -> torch.LongTensor:
    """Cluster the rows of `x` into `num_clusters` groups of exactly `len(x) / num_clusters` rows.

    Groups maximise the summed norm of their row sums, i.e. for unit rows (callers L2-normalise
    keys first) the mean cosine similarity of each row to its group's centroid. Refinement stops
    after `max_iters` steps, or once `patience` steps in a row failed to raise that quality by a
    relative `tol`; the best split seen is returned. Deterministic for a given `seed`.
    """
    n = x.shape[0]
    if num_clusters < 1 or n % num_clusters:
        raise ValueError(
            f"balanced_kmeans: {n} rows cannot be split into {num_clusters} equal clusters "
            f"(num_clusters must divide {n})"
        )
    if num_clusters == 1 or n == 0:
        return torch.zeros(n, dtype=torch.long)
    points = x.detach().to("cpu", torch.float32).contiguous()
    generator = torch.Generator().manual_seed(seed)
    centroids = _kmeans_plus_plus(points, num_clusters, generator)
    scores = points @ F.normalize(centroids, dim=1).T
    prices = _update_prices(scores, torch.zeros(num_clusters), _FIRST_PRICE_STEPS)
    labels = _balanced_round(scores, prices)
    return _refine(points, labels, prices, max_iters, tol, patience)


def _kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeds (best of a few drawn rows), on a sample so big layers stay cheap."""
    if len(points) > _SEED_SAMPLE:
        points = points[torch.randperm(len(points), generator=generator)[:_SEED_SAMPLE]]
    trials = 2 + int(math.log(k))
    chosen = [int(torch.randint(len(points), (1,), generator=generator))]
    nearest = points @ points[chosen[0]]
    for _ in range(1, k):
        distance = (1 - nearest).clamp(min=0)
        if distance.sum() <= 0:  # every row already coincides with a centroid
            distance = torch.ones_like(distance)
        candidates = torch.multinomial(distance, trials, replacement=True, generator=generator)
        options = torch.maximum(nearest[:, None], points @ points[candidates].T)
        pick = int((1 - options).clamp(min=0).sum(dim=0).argmin())
        chosen.append(int(candidates[pick]))
        nearest = options[:, pick]
    return points[chosen]


def _refine(
    points: torch.Tensor,
    labels: torch.Tensor,
    prices: torch.Tensor,
    max_iters: int,
    tol: float,
    patience: int,
) -> torch.LongTensor:
    """Re-split by marginal gains until the quality stops rising, returning the best split."""
    k = len(prices)
    sq_rows = points.square().sum(dim=1, keepdim=True)
    best_labels, best_quality, stalled = labels, -math.inf, 0
    for step in range(max_iters + 1):
        sums = torch.zeros(k, points.shape[1]).index_add_(0, labels, points)
        quality = float(sums.norm(dim=1).sum())
        stalled = 0 if quality > best_quality + tol * abs(quality) else stalled + 1
        if quality > best_quality:
            best_labels, best_quality = labels, quality
        if stalled >= patience or step == max_iters:
            break
        scores = _marginal_gains(points, sq_rows, labels, sums)
        prices = _update_prices(scores, prices, _PRICE_STEPS)
        labels = _balanced_round(scores, prices)
    return best_labels


def _marginal_gains(
    points: torch.Tensor, sq_rows: torch.Tensor, labels: torch.Tensor, sums: torch.Tensor
) -> torch.Tensor:
    """Change of `|S_c|` if a row joins group `c` (own group: what it adds), so rows can leave."""
    dots = points @ sums.T
    norms = sums.norm(dim=1)
    own_norms = norms[labels, None]
    without = (own_norms.square() - 2 * dots.gather(1, labels[:, None]) + sq_rows)
    own_gain = own_norms - without.clamp_(min=0).sqrt_()
    gains = dots.mul_(2).add_(norms.square()).add_(sq_rows).clamp_(min=0).sqrt_().sub_(norms)
    return gains.scatter_(1, labels[:, None], own_gain)


def _top_two(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best value, its column and the runner-up value of every row (cheaper than topk here)."""
    best, column = values.max(dim=1)
    runner_up = values.scatter(1, column[:, None], -math.inf).amax(dim=1)
    return best, column, runner_up


def _update_prices(scores: torch.Tensor, prices: torch.Tensor, steps: int) -> torch.Tensor:
    """Damped dual steps: move each price half-way to where `n / k` rows prefer its group."""
    n, k = scores.shape
    size = n // k
    for _ in range(steps):
        best, column, runner_up = _top_two(scores - prices)
        own = scores.gather(1, column[:, None]) - runner_up[:, None]
        margins = (scores - best[:, None]).scatter_(1, column[:, None], own)
        edge = margins.T.topk(size + 1, dim=1).values[:, -2:]
        prices = prices + 0.5 * (edge.mean(dim=1) - prices)
    return prices - prices.mean()


def _balanced_round(scores: torch.Tensor, prices: torch.Tensor) -> torch.LongTensor:
    """Exactly `n / k` rows per group: full groups keep the proposers that lose most elsewhere."""
    n, k = scores.shape
    values = scores - prices
    labels = torch.full((n,), -1, dtype=torch.long)
    capacity = torch.full((k,), n // k, dtype=torch.long)
    pending = torch.arange(n)
    while len(pending):
        open_values = values[pending]
        open_values[:, capacity == 0] = -math.inf
        best, choice, runner_up = _top_two(open_values)
        accepted = _rank_in_group(choice, best - runner_up, k) < capacity[choice]
        labels[pending[accepted]] = choice[accepted]
        capacity -= torch.bincount(choice[accepted], minlength=k)
        pending = pending[~accepted]
    return labels


def _rank_in_group(groups: torch.Tensor, keys: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Rank of every entry among the entries of its group, by descending key (ties by position)."""
    by_key = torch.sort(keys, descending=True, stable=True).indices
    order = by_key[torch.sort(groups[by_key], stable=True).indices]
    counts = torch.bincount(groups, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.empty_like(groups)
    ranks[order] = torch.arange(len(groups)) - starts[groups[order]]
    return ranks
