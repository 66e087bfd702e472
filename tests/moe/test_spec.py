"""The LayerSpec: the one record of what a converted layer computes."""

import json

import pytest
import torch

from emoe_cli.moe import LayerSpec, emoe_modules, emoefy, emoefy_spec
from emoe_cli.moe.profile import PROFILES
from emoe_cli.moe.receipt import model_outputs
from emoe_cli.moe.serialize import SPEC_FILE, load_emoe, save_emoe
from emoe_cli.moe.spec import saved_entry, spec_from_saved
from tests.conftest import tiny_bert

IDS = {"input_ids": torch.randint(1, 100, (2, 9), generator=torch.Generator().manual_seed(4))}


def test_emoefy_keywords_and_emoefy_spec_build_the_same_layer():
    by_keywords = emoefy(tiny_bert().eval(), 8, 2, layers=[1], gate="learned", noise=0.5,
                         selection="bottom", capacity_factor=1.5, profile="clean")
    spec = LayerSpec(num_experts=8, top_k=2, gate="learned", gate_options={"noise": 0.5},
                     selection="bottom", capacity_factor=1.5)
    by_spec = emoefy_spec(tiny_bert().eval(), spec, layers=[1])
    (a,), (b,) = emoe_modules(by_keywords), emoe_modules(by_spec)
    assert a.spec == b.spec == spec
    assert (b.selection, b.capacity_factor, b.gate_options) == ("bottom", 1.5, {"noise": 0.5})
    a.eval(), b.eval()
    torch.testing.assert_close(model_outputs(by_keywords, IDS), model_outputs(by_spec, IDS))


def test_a_spec_survives_its_saved_form():
    spec = LayerSpec(num_experts=4, top_k=3, gate="cosine", gate_options={"proj_dim": 8},
                     selection="other", select="gate", capacity_factor=2.0, expert_repeat=2,
                     profile=PROFILES["official"])
    assert spec_from_saved(json.loads(json.dumps(saved_entry(spec)))) == spec


@pytest.mark.parametrize("missing", ["selection", "select", "capacity_factor",
                                     "expert_repeat", "profile"])
def test_an_older_emoe_json_without_a_key_loads_with_that_keys_old_default(tmp_path, missing):
    model = emoefy(tiny_bert(), 8, 2, layers=[0], momentum=0.5)
    save_emoe(model, tmp_path)
    saved = json.loads((tmp_path / SPEC_FILE).read_text())
    del saved["layers"][0][missing]
    (tmp_path / SPEC_FILE).write_text(json.dumps(saved))
    (layer,) = emoe_modules(load_emoe(tmp_path))
    assert layer.spec == LayerSpec(num_experts=8, top_k=2, gate_options={"momentum": 0.5})
