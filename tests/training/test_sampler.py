"""The training order: a new permutation each epoch, fixed by (seed, epoch) alone."""

from emoe_cli.training.sampler import EpochShuffleSampler


def test_each_epoch_has_its_own_order_and_a_restart_repeats_it():
    sampler = EpochShuffleSampler(50, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert all(sorted(order) == list(range(50)) for order in orders)
    assert orders[0] != orders[1] != orders[2] != orders[0]
    restarted = EpochShuffleSampler(50, seed=3)  # a resumed run, straight into epoch 2
    restarted.set_epoch(2)
    assert list(restarted) == orders[2] and list(restarted) == orders[2]


def test_the_seed_changes_the_order():
    assert list(EpochShuffleSampler(50, seed=0)) != list(EpochShuffleSampler(50, seed=1))
