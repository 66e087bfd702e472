import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emoe_cli.moe import balanced_kmeans


def test_every_cluster_has_exactly_n_over_k_rows():
    x = F.normalize(torch.randn(384, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    labels = balanced_kmeans(x, 12, seed=0)
    assert labels.dtype == torch.long and labels.shape == (384,)
    assert torch.bincount(labels, minlength=12).tolist() == [32] * 12


def test_same_seed_same_clusters():
    x = F.normalize(torch.randn(256, 8, generator=torch.Generator().manual_seed(2)), dim=-1)
    assert torch.equal(balanced_kmeans(x, 8, seed=3), balanced_kmeans(x, 8, seed=3))


def test_recovers_well_separated_groups():
    generator = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 32, generator=generator), dim=-1) * 10
    x = torch.cat([c + 0.1 * torch.randn(16, 32, generator=generator) for c in centres])
    labels = balanced_kmeans(F.normalize(x, dim=-1), 4, seed=0)
    for group in labels.view(4, 16):
        assert len(set(group.tolist())) == 1
    assert len(set(labels.tolist())) == 4


def test_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="num_clusters must divide 10"):
        balanced_kmeans(torch.randn(10, 3), 3)


def test_single_cluster_and_singleton_clusters():
    x = F.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(4)), dim=-1)
    assert balanced_kmeans(x, 1).tolist() == [0] * 8
    assert sorted(balanced_kmeans(x, 8).tolist()) == list(range(8))


def test_identical_rows_still_split_evenly():
    labels = balanced_kmeans(F.normalize(torch.ones(64, 8), dim=-1), 4, seed=1)
    assert torch.bincount(labels, minlength=4).tolist() == [16] * 4


def test_more_rows_than_the_seeding_sample_still_split_evenly():
    x = F.normalize(torch.randn(2560, 8, generator=torch.Generator().manual_seed(6)), dim=-1)
    labels = balanced_kmeans(x, 40, seed=0, max_iters=3)
    assert torch.bincount(labels, minlength=40).tolist() == [64] * 40


def test_other_seed_gives_another_split():
    x = F.normalize(torch.randn(256, 8, generator=torch.Generator().manual_seed(5)), dim=-1)
    assert not torch.equal(balanced_kmeans(x, 8, seed=0), balanced_kmeans(x, 8, seed=1))


def _quality(keys: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Mean cosine similarity of every key to the mean of its cluster's keys."""
    centroids = torch.zeros(k, keys.shape[1]).index_add_(0, labels, keys)
    return F.cosine_similarity(keys, centroids[labels], dim=-1).mean().item()


def _greedy_fill(similarity: np.ndarray, size: int) -> torch.Tensor:
    """Walk (row, cluster) pairs from most to least similar, placing each row once where room is."""
    n, k = similarity.shape
    labels, room, left = [-1] * n, [size] * k, n
    for flat in np.argsort(-similarity, axis=None, kind="stable").tolist():
        row, cluster = divmod(flat, k)
        if labels[row] < 0 and room[cluster]:
            labels[row], room[cluster], left = cluster, room[cluster] - 1, left - 1
            if not left:
                break
    return torch.tensor(labels)


def _greedy_lloyd(keys: torch.Tensor, k: int, iters: int = 3) -> torch.Tensor:
    """A simple baseline: Lloyd steps whose balanced assignment is a greedy fill."""
    first = torch.randperm(len(keys), generator=torch.Generator().manual_seed(0))[:k]
    centroids = keys[first]
    for _ in range(iters):
        similarity = (keys @ F.normalize(centroids, dim=1).T).numpy()
        labels = _greedy_fill(similarity, len(keys) // k)
        centroids = torch.zeros(k, keys.shape[1]).index_add_(0, labels, keys)
    return labels


# KMeansConstrained(n_clusters=64, size_min=size_max=24, random_state=0), n_init=10, reaches
# 0.4371 on these keys (scripts/bench/bench_clustering.py); the issue asks for >= 99.5% of it.
KMEANS_CONSTRAINED_QUALITY_LAYER0_N64 = 0.4371


def test_minilm_layer_quality_beats_greedy_baseline_and_reference(minilm_path):
    safetensors = pytest.importorskip("safetensors.torch")
    weights = safetensors.load_file(os.path.join(minilm_path, "model.safetensors"))
    keys = F.normalize(weights["encoder.layer.0.intermediate.dense.weight"].float(), dim=-1)
    labels = balanced_kmeans(keys, 64, seed=0)
    assert torch.bincount(labels, minlength=64).tolist() == [24] * 64
    quality = _quality(keys, labels, 64)
    assert quality >= 1.03 * _quality(keys, _greedy_lloyd(keys, 64), 64)
    assert quality >= 0.995 * KMEANS_CONSTRAINED_QUALITY_LAYER0_N64
