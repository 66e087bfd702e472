import pytest
from omegaconf import OmegaConf

from emoe_cli.data.tasks import train_limit
from emoe_cli.errors import UserError


def data_cfg(fraction=None, cap=None):
    return OmegaConf.create({"train_fraction": fraction, "max_train_samples": cap})


@pytest.mark.parametrize("fraction, cap, expected", [
    (None, None, None), (None, 50, 50), (0.8, None, 80), (0.8, 50, 50), (0.25, 50, 25),
    (1.0, None, 100), (0.001, None, 1)])
def test_train_limit_applies_the_fraction_then_the_cap(fraction, cap, expected):
    assert train_limit(100, data_cfg(fraction, cap)) == expected


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1, "half", True])
def test_bad_fraction_names_the_key(fraction):
    with pytest.raises(UserError, match=r"data.train_fraction=.* is invalid; valid: a number"):
        train_limit(100, data_cfg(fraction))
