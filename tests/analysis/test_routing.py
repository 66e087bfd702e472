"""Routing counts on hand-made layers, on a converted BERT, and the report built from them."""

import json

import pytest
import torch
from torch import nn

from emoe_cli.analysis.routing import count_routing, layer_index, record_routing
from emoe_cli.analysis.routing_report import cli, summary_rows, usage_rows, write_report
from emoe_cli.moe import emoefy
from emoe_cli.moe.layer import DenseFFN, EMoEFeedForward
from tests.conftest import tiny_bert
from tests.helpers import assert_one_line_error

E0, E1 = [1.0, 0.0], [0.0, 1.0]  # tokens that pick expert 0 / expert 1


class TwoBlocks(nn.Module):
    """Block 1 holds a 2-expert layer whose keys are the unit vectors: a token [1, 0] scores
    expert 0 higher, [0, 1] expert 1."""

    def __init__(self, top_k: int) -> None:
        super().__init__()
        w1 = torch.tensor([E0, E1, E0, E1])  # neurons 0, 2 → expert 0; 1, 3 → expert 1
        ffn = DenseFFN(w1=w1, b1=None, w2=torch.eye(2, 4), b2=None, act=nn.ReLU())
        layer = EMoEFeedForward(ffn, torch.tensor([0, 1, 0, 1]), top_k)
        self.blocks = nn.ModuleList([nn.Identity(), layer])

    def forward(self, hidden, attention_mask=None):
        return self.blocks[1](hidden)


BATCH = {"hidden": torch.tensor([[E0, E0, E1], [E1, E0, E0]]),
         "attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]])}


def test_counts_are_the_routers_choices_over_real_tokens_only():
    counts = count_routing(TwoBlocks(top_k=1), [BATCH])
    assert counts == {"1": {"tokens": 3, "counts": [2, 1]}}  # padding left out
    unmasked = count_routing(TwoBlocks(top_k=1), [{"hidden": BATCH["hidden"]}] * 2)
    assert unmasked == {"1": {"tokens": 12, "counts": [8, 4]}}


def test_with_k_equal_n_every_token_selects_every_expert():
    assert count_routing(TwoBlocks(top_k=2), [BATCH]) == {"1": {"tokens": 3, "counts": [3, 3]}}


def test_counting_leaves_the_model_as_it_was():
    model = TwoBlocks(top_k=1).train()
    count_routing(model, [BATCH])
    assert model.training and not model._forward_pre_hooks
    assert not model.blocks[1]._forward_pre_hooks


def test_counts_on_a_converted_bert_match_its_tokens():
    model = emoefy(tiny_bert(), num_experts=4, top_k=2, layers=[0, 2])
    ids = torch.randint(1, 100, (3, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.zeros(3, dtype=int)}
    counts = count_routing(model, [batch])
    assert set(counts) == {"0", "2"}
    for entry in counts.values():
        assert entry["tokens"] == 12 and sum(entry["counts"]) == 12 * 2


@pytest.mark.parametrize("name, index", [("bert.encoder.layer.10.intermediate", 10),
                                         ("base_model.model.transformer.h.44.mlp", 44),
                                         ("model.layers.3.mlp", 3)])
def test_layer_index_reads_the_block_number(name, index):
    assert layer_index(name) == index


def routing_payload():
    return {"layers": {"1": {"num_experts": 2, "top_k": 1}},
            "splits": {"train": {"1": {"tokens": 4, "counts": [3, 1]}},
                       "id": {"1": {"tokens": 4, "counts": [1, 3]}}}}


def test_report_numbers_by_hand():
    usage = {(r["split"], r["expert"]): r for r in usage_rows(routing_payload())}
    assert usage["train", 0]["share"] == 0.75 and usage["train", 0]["load"] == 1.5
    assert usage["id", 1]["count"] == 3
    summary = {r["split"]: r for r in summary_rows(routing_payload())}
    assert summary["train"]["tv_from_train"] == 0.0
    assert summary["id"]["tv_from_train"] == pytest.approx(0.5)  # ½(|.25-.75| + |.75-.25|)
    assert summary["id"]["max_load"] == 1.5
    assert summary["id"]["entropy"] == pytest.approx(0.8112781)  # H(¼, ¾) in bits


def test_report_writes_csv_and_png(tmp_path):
    (tmp_path / "routing.json").write_text(json.dumps(routing_payload()))
    paths = write_report(tmp_path)
    assert [p.name for p in paths] == ["routing_usage.csv", "routing_summary.csv",
                                       "routing_usage.png", "routing_train_vs_test.png"]
    assert paths[0].read_text().splitlines()[0] == "split,layer,expert,count,tokens,share,load"
    for png in paths[2:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_record_then_report_from_a_real_model(tmp_path):
    model = emoefy(tiny_bert(), num_experts=4, top_k=1, layers=[1])
    batch = {"input_ids": torch.randint(1, 100, (2, 5)), "attention_mask": torch.ones(2, 5)}
    path = record_routing(model, {"train": [batch], "id": [batch]}, tmp_path)
    payload = json.loads(path.read_text())
    assert payload["layers"] == {"1": {"num_experts": 4, "top_k": 1}}
    assert payload["splits"]["train"] == payload["splits"]["id"]
    summary = summary_rows(payload)
    assert [r["tv_from_train"] for r in summary] == [0.0, 0.0]


def test_cli_names_a_missing_record_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli([str(tmp_path)])
    line = assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                                 f"no routing.json at {tmp_path / 'routing.json'}",
                                 "emoe-routing")
    assert line.endswith("; valid: the output folder of a run made with analysis.routing=true "
                         "(and moe enabled)")
