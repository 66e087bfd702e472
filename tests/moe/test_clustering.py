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
