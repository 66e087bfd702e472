"""End-to-end: the method-side switches of `emoe-run` on the real MiniLM and SST-2 data."""

import json

import pytest
import torch
import transformers

from emoe_cli.cli.train import run
from emoe_cli.experiment.method import method_name
from emoe_cli.moe import emoe_modules, load_emoe
from tests.helpers import assert_one_line_error, compose_config

TINY = ["experiment=quickstart", "debug=fast", "data.max_train_samples=32",
        "data.max_eval_samples=16", "task.ood=[yelp]", "moe.layers=[4]"]


@pytest.mark.slow
def test_run_records_receipt_saves_and_exports_dense(shared_data, minilm_path, tmp_path):
    """Train as EMoE on half the data, evaluate with every expert, save, export as dense."""
    overrides = [*TINY, f"data.root={shared_data}", "moe.save_model=true",
                 "moe.export_dense=true", f"moe.cluster_cache={tmp_path / 'clusters'}",
                 "moe.eval_as=dense", "data.train_fraction=0.5"]
    run(compose_config(overrides), tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "completed" and record["method"] == "emoe_eval_dense"
    assert record["epochs"][0]["step"] == 1  # 16 of the 32 examples, batch size 16
    receipt = record["conversion_receipt"]
    assert receipt["batch_size"] == 8 and 0 <= receipt["max_abs_diff"] < receipt["tolerance"]
    assert receipt["top_k"] == 16 and list(receipt["kept_share"]) == ["4"]  # before training
    assert 0.25 < receipt["kept_share"]["4"] < 1 and 0 < receipt["hidden_relative_l2"] < 1
    assert len(list((tmp_path / "clusters").iterdir())) == 1

    export = record["dense_export"]
    assert export["path"] == str(tmp_path / "dense_model")
    assert export["id"]["num_examples"] == 16 and set(export["ood"]) == {"yelp"}
    # evaluated with every expert, the EMoE model is the exported dense one
    assert export["id"]["metrics"] == pytest.approx(record["id"]["metrics"], abs=1e-9)
    assert export["ood"]["yelp"]["score"] == pytest.approx(record["ood"]["yelp"]["score"])
    dense = transformers.AutoModelForSequenceClassification.from_pretrained(export["path"])
    assert not list(emoe_modules(dense))

    model = load_emoe(record["saved_model"])
    layer = next(emoe_modules(model))
    assert (layer.num_experts, layer.top_k) == (64, 16)
    ids = torch.tensor([[101, 7592, 2088, 102]])
    assert model(input_ids=ids).logits.shape == (1, 2)


@pytest.mark.parametrize("override, message", [
    ("moe.selection=worst", "moe.selection='worst' is invalid; valid: top, other, bottom"),
    ("moe.train_as=sparse", "moe.train_as='sparse' is invalid; valid: emoe, dense"),
    ("moe.receipt_tolerance=-1", "moe.receipt_tolerance=-1 is invalid; valid: a number >= 0"),
    ("data.train_fraction=0", "data.train_fraction=0 is invalid; valid: a number in (0, 1]"),
    ("moe=noisy moe.noise_lambda=-0.1", "moe.noise_lambda=-0.1 is invalid; valid: a number >= 0"),
    ("gate=learned moe.select=inter", "select='inter' scores experts without a router"),
    ("gate.capacity_factor=0", "capacity_factor=0 is invalid; valid: a positive number or null"),
    ("gate=cosine gate.expert_repeat=2 moe.export_dense=true",
     "moe.export_dense=True is invalid; valid: false with gate.expert_repeat > 1"),
    ("gate=cosine moe.num_experts=2 moe.top_k=3 gate.expert_repeat=2",
     "moe.top_k=3 is invalid; valid: 1..moe.num_experts (2)"),
    ("gate=cosine moe.num_experts=2 moe.top_k=1 gate.expert_repeat=3",
     "gate.expert_repeat=3 is invalid; valid: 1..moe.num_experts (2): each expert joins"),
])
def test_bad_method_switches_are_one_line_errors(override, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*TINY, *override.split()]), tmp_path)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err, message)


def test_method_names_mark_the_ablations():
    assert method_name(compose_config(["moe.selection=other"])) == "emoe_other"
    assert method_name(compose_config(["moe.train_as=dense", "moe.split=random"])) == \
        "emoe_random_train_dense"
    assert method_name(compose_config(["moe=dense"])) == "dense"
    assert method_name(compose_config(["moe=noisy"])) == "noisy"
    assert method_name(compose_config(["moe.noise_lambda=0.15"])) == "emoe_noisy"
