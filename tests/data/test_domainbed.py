"""The leave-one-domain-out split: which domains train, the carved validation, seeds."""

import datasets
import numpy as np
import pytest

from emoe_cli.data.domainbed import carve, held_out_index, leave_one_out
from emoe_cli.errors import UserError


def domains(sizes: dict[str, int]) -> dict[str, datasets.Dataset]:
    """Rows numbered per domain, so a split can be traced back to its source."""
    return {name: datasets.Dataset.from_dict({"domain": [name] * n, "row": list(range(n)),
                                              "label": [0] * n})
            for name, n in sizes.items()}


SIZES = {"a": 50, "b": 31, "c": 10, "d": 7}


def test_carve_is_a_partition_of_the_documented_size():
    keep, carved = carve(31, 0.2, seed=0, domain_index=1)
    assert len(carved) == 6 and len(keep) == 25  # int(31 * 0.2), as DomainBed
    assert sorted(np.concatenate([keep, carved]).tolist()) == list(range(31))


def test_carve_depends_on_seed_and_domain_only():
    first = carve(100, 0.2, seed=3, domain_index=0)[1]
    assert np.array_equal(first, carve(100, 0.2, seed=3, domain_index=0)[1])
    assert not np.array_equal(first, carve(100, 0.2, seed=4, domain_index=0)[1])
    assert not np.array_equal(first, carve(100, 0.2, seed=3, domain_index=1)[1])


def test_held_out_domain_is_only_the_ood_set():
    split = leave_one_out(domains(SIZES), test_env=2, fraction=0.2, seed=0)
    assert split.test_name == "c" and len(split.test) == 10
    assert set(split.train["domain"]) == set(split.validation["domain"]) == {"a", "b", "d"}
    assert len(split.validation) == 10 + 6 + 1 and len(split.train) == 40 + 25 + 6
    assert split.sizes["c"] == {"test": 10} and split.sizes["b"] == {"train": 25,
                                                                     "validation": 6}
    for name in ("a", "b", "d"):  # no row is both trained on and validated
        trained = {r for d, r in zip(split.train["domain"], split.train["row"]) if d == name}
        held = {r for d, r in zip(split.validation["domain"], split.validation["row"])
                if d == name}
        assert not trained & held and len(trained | held) == SIZES[name]


def test_split_is_deterministic_by_seed():
    one = leave_one_out(domains(SIZES), 0, 0.2, seed=1)
    assert one.validation["row"] == leave_one_out(domains(SIZES), 0, 0.2, seed=1).validation["row"]
    assert one.validation["row"] != leave_one_out(domains(SIZES), 0, 0.2, seed=2).validation["row"]


def test_test_env_by_name_or_index():
    names = list(SIZES)
    assert held_out_index(names, "d") == 3 and held_out_index(names, 0) == 0
    for bad in (4, -1, "e", True):
        with pytest.raises(UserError, match=r"^task.test_env=.* is invalid; valid: 0..3 or a "
                                            r"domain name \(a, b, c, d\)$"):
            held_out_index(names, bad)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, "x"])
def test_bad_holdout_fraction_names_the_key(fraction):
    with pytest.raises(UserError, match="task.holdout_fraction"):
        leave_one_out(domains(SIZES), 0, fraction, seed=0)


def test_domain_too_small_to_carve_is_an_error():
    with pytest.raises(UserError, match="domain 'd' has 7 rows"):
        leave_one_out(domains(SIZES), 0, 0.1, seed=0)
