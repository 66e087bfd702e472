"""End to end: `emoe-run lora=emoe analysis.routing=true` on real MiniLM weights and SST-2,
then `emoe-routing` on its output folder."""

import json

import pytest

from emoe_cli.analysis.routing_report import cli as routing_cli
from emoe_cli.cli.train import run
from tests.helpers import compose_config

pytest.importorskip("peft")


@pytest.mark.slow
def test_emoe_lora_run_records_routing_and_reports_it(shared_data, minilm_path, tmp_path,
                                                      capsys):
    cfg = compose_config(["experiment=quickstart", "debug=fast", f"data.root={shared_data}",
                          "data.max_train_samples=16", "data.max_eval_samples=8",
                          "task.ood=[yelp]", "moe.num_experts=16", "moe.top_k=4",
                          "lora=emoe", "trainer.lr=3e-4", "analysis.routing=true"])
    run(cfg, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert (record["status"], record["method"]) == ("completed", "emoe_lora")
    lora = record["lora"]
    # MiniLM: LoRA r=8 on query, value, W1, W2 of blocks 2 and 4, plus the 2-class head.
    assert lora["trainable_parameters"] == 2 * (2 * 8 * (384 + 384) + 2 * 8 * (384 + 1536)) + 770
    assert record["routing_file"] == "routing.json"
    routing = json.loads((tmp_path / "routing.json").read_text())
    assert set(routing["splits"]) == {"train", "id", "ood/yelp"}
    assert routing["layers"] == {"2": {"num_experts": 16, "top_k": 4},
                                 "4": {"num_experts": 16, "top_k": 4}}
    for split in routing["splits"].values():
        for entry in split.values():
            assert sum(entry["counts"]) == 4 * entry["tokens"] > 0

    routing_cli([str(tmp_path)])
    written = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in written][-4:] == [
        "routing_usage.csv", "routing_summary.csv", "routing_usage.png",
        "routing_train_vs_test.png"]
