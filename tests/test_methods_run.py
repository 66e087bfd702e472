"""End-to-end: the method-side switches of `emoe-run` on the real MiniLM and SST-2 data."""

import json

import pytest
import torch
import transformers

from emoe_cli.moe import emoe_modules, load_emoe
from emoe_cli.train import run
from tests.helpers import compose_config

TINY = ["experiment=quickstart", "debug=fast", "data.max_train_samples=32",
        "data.max_eval_samples=16", "task.ood=[yelp]", "moe.layers=[4]"]


@pytest.mark.slow
def test_run_records_receipt_saves_and_exports_dense(shared_data, minilm_path, tmp_path):
    overrides = [*TINY, f"data.root={shared_data}", "moe.save_model=true",
                 "moe.export_dense=true", f"moe.cluster_cache={tmp_path / 'clusters'}"]
    run(compose_config(overrides), tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "completed"
    receipt = record["conversion_receipt"]
    assert receipt["batch_size"] == 8 and 0 <= receipt["max_abs_diff"] < receipt["tolerance"]
    assert len(list((tmp_path / "clusters").iterdir())) == 1

    export = record["dense_export"]
    assert export["path"] == str(tmp_path / "dense_model")
    assert export["id"]["num_examples"] == 16 and set(export["ood"]) == {"yelp"}
    assert 0.0 <= export["id"]["score"] <= 1.0
    dense = transformers.AutoModelForSequenceClassification.from_pretrained(export["path"])
    assert not list(emoe_modules(dense))

    model = load_emoe(record["saved_model"])
    layer = next(emoe_modules(model))
    assert (layer.num_experts, layer.top_k) == (64, 16)
    ids = torch.tensor([[101, 7592, 2088, 102]])
    assert model(input_ids=ids).logits.shape == (1, 2)
