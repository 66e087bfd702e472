"""Balanced k-means: split FFN key rows into equal-size groups, the experts of EMoE."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def balanced_kmeans(
    x: torch.Tensor, num_clusters: int, seed: int = 0, max_iters: int = 50
) -> torch.LongTensor:
    """Cluster the rows of `x` into `num_clusters` groups of exactly `len(x) / num_clusters` rows.

    Lloyd's algorithm with the assignment step replaced by an exact balanced assignment
    (maximise the total similarity to the centroids under equal cluster sizes), as the
    size-constrained k-means of the original EMoE code does. Rows are used as given: callers
    L2-normalise keys first. Deterministic for a given `seed`.
    """
    n = x.shape[0]
    if num_clusters < 1 or n % num_clusters:
        raise ValueError(
            f"balanced_kmeans: {n} rows cannot be split into {num_clusters} equal clusters "
            f"(num_clusters must divide {n})"
        )
    size = n // num_clusters
    if num_clusters == 1:
        return torch.zeros(n, dtype=torch.long)
    points = x.detach().to(torch.float64).cpu().numpy()
    rng = np.random.default_rng(seed)
    centroids = _kmeans_plus_plus(points, num_clusters, rng)
    labels = None
    for _ in range(max_iters):
        new_labels = _balanced_assignment(points @ centroids.T, size)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        centroids = np.stack([points[labels == c].mean(axis=0) for c in range(num_clusters)])
    return torch.as_tensor(labels, dtype=torch.long)


def _kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: spread the initial centroids by squared distance."""
    first = rng.integers(len(points))
    centroids = [points[first]]
    dist = ((points - points[first]) ** 2).sum(axis=1)
    for _ in range(1, k):
        probs = dist / dist.sum() if dist.sum() > 0 else np.full(len(points), 1 / len(points))
        nxt = rng.choice(len(points), p=probs)
        centroids.append(points[nxt])
        dist = np.minimum(dist, ((points - points[nxt]) ** 2).sum(axis=1))
    return np.stack(centroids)


def _balanced_assignment(similarity: np.ndarray, size: int) -> np.ndarray:
    """Optimal assignment of points to clusters with exactly `size` points each.

    With equal cluster sizes, maximising the summed dot product with the centroids is the
    same as minimising the summed squared distance (the centroid-norm terms add up to a
    constant), so this is the exact constrained k-means assignment step.
    """
    slots = np.repeat(similarity, size, axis=1)
    rows, cols = linear_sum_assignment(slots, maximize=True)
    labels = np.empty(len(similarity), dtype=np.int64)
    labels[rows] = cols // size
    return labels
