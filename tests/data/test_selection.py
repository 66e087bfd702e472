import datasets
import pytest
from omegaconf import OmegaConf

from emoe_cli.data.selection import selection_record, split_for_selection
from emoe_cli.errors import UserError


def data_cfg(**values):
    return OmegaConf.create({"subset_seed": 0, "selection": "dev", "selection_fraction": 0.1,
                             **values})


TRAIN = datasets.Dataset.from_dict({"text_a": [f"s{i}" for i in range(40)],
                                    "label": [i % 2 for i in range(40)]})


def test_dev_rule_keeps_all_training_data():
    train, held_out = split_for_selection(TRAIN, data_cfg())
    assert held_out is None and len(train) == 40


def test_heldout_rule_carves_a_fixed_disjoint_part_of_train():
    cfg = data_cfg(selection="heldout", selection_fraction=0.25)
    train, held_out = split_for_selection(TRAIN, cfg)
    assert (len(train), len(held_out)) == (30, 10)
    assert not set(train["text_a"]) & set(held_out["text_a"])
    assert split_for_selection(TRAIN, cfg)[1]["text_a"] == held_out["text_a"]  # same each run
    assert selection_record(cfg, {"score": 0.7}) == {
        "selection": "heldout", "selection_score": 0.7, "selection_fraction": 0.25}


@pytest.mark.parametrize("values, message", [
    ({"selection": "test"}, "data.selection='test' is invalid; valid: dev, heldout"),
    ({"selection": "heldout", "selection_fraction": 1.0}, "data.selection_fraction=1.0"),
])
def test_bad_selection_settings_name_the_key(values, message):
    with pytest.raises(UserError, match=message):
        split_for_selection(TRAIN, data_cfg(**values))
