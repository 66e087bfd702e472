"""`moe.layers`: named rules and indices (negatives from the end) pick the converted blocks."""

import pytest

from emoe_cli.moe import EMoEFeedForward, emoefy, resolve_layers
from tests.conftest import tiny_bert


@pytest.mark.parametrize("spec, expected", [
    ("all", [0, 1, 2, 3, 4, 5]),
    ("even", [0, 2, 4]),
    ("odd", [1, 3, 5]),
    ("every_other", [1, 3, 5]),  # GMoE: the second block of each pair
    ("last_half", [3, 4, 5]),
    ("last_2", [4, 5]),
    ("last_10", [0, 1, 2, 3, 4, 5]),
    (" Even ", [0, 2, 4]),
    (-1, [5]),
    ([-1, 0], [0, 5]),
    ([1, -5, 3], [1, 3]),  # -5 is block 1: each block once, in order
])
def test_layer_rules_on_six_blocks(spec, expected):
    assert resolve_layers(spec, 6) == expected


@pytest.mark.parametrize("spec, message", [
    ("middle", "moe.layers='middle' is not a rule"),
    ("last_0", "moe.layers='last_0' is not a rule"),
    ([6], "moe.layers entry 6 is out of range for a model with 6 layers"),
    ([-7], "moe.layers entry -7 is out of range"),
    ([], "moe.layers is empty"),
])
def test_bad_layer_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve_layers(spec, 6)


@pytest.mark.parametrize("spec, converted", [("every_other", [1]), ("even", [0, 2]),
                                             ([-1], [2])])
def test_emoefy_converts_exactly_the_chosen_blocks(spec, converted):
    model = emoefy(tiny_bert(), num_experts=8, top_k=2, layers=spec)
    blocks = model.bert.encoder.layer
    assert [i for i, block in enumerate(blocks)
            if any(isinstance(m, EMoEFeedForward) for m in block.modules())] == converted
