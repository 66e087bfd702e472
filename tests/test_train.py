"""End-to-end runs on the real MiniLM weights and the real SST-2 / OOD data, kept tiny."""

import json

import pytest
import torch

from emoe_cli.cli.train import run
from emoe_cli.experiment import recipe
from emoe_cli.experiment.method import loop_hooks
from emoe_cli.moe import emoe_modules
from emoe_cli.training.loop import fit
from tests.helpers import assert_one_line_error, compose_config

TINY = ["experiment=quickstart", "debug=fast", "data.max_train_samples=32",
        "data.max_eval_samples=16"]
RECORD_KEYS = {"status", "task", "model", "method", "seed", "id", "ood", "epochs", "timing",
               "config"}
# results.json of a TINY run, key by key in order, as runner.py wrote it before the recipe
# and its typed result replaced it (base commit 407b3fc)
TINY_RUN_KEYS = ["task", "model", "method", "seed", "config", "status", "id", "ood", "epochs",
                 "timing", "best_epoch", "profile", "moe_summary", "identity", "weights",
                 "conversion_receipt", "ffn_params", "selection", "selection_score",
                 "seconds_per_step"]


@pytest.fixture
def tiny(shared_data, minilm_path):
    return [*TINY, f"data.root={shared_data}"]


def _record(path):
    return json.loads((path / "results.json").read_text())


@pytest.mark.slow
def test_emoe_run_writes_the_contract_record(tiny, tmp_path, capsys):
    score = run(compose_config(tiny), tmp_path)
    record = _record(tmp_path)
    assert RECORD_KEYS <= record.keys()
    assert list(record) == TINY_RUN_KEYS
    assert (record["status"], record["task"], record["model"], record["method"]) == (
        "completed", "sst2", "minilm", "emoe")
    assert record["id"]["split"] == "validation" and record["id"]["score"] == score
    assert set(record["ood"]) == {"imdb", "yelp", "amazon"}
    for result in [record["id"], *record["ood"].values()]:
        assert 0.0 <= result["metrics"]["accuracy"] <= 1.0
        assert result["score"] == result["metrics"]["accuracy"]
        assert result["num_examples"] == 16
    assert [e["epoch"] for e in record["epochs"]] == [1] and record["best_epoch"] == 1
    assert set(record["timing"]) == {"convert", "train", "eval"}
    assert record["config"]["moe"]["layers"] == [2, 4]  # resolved, not an interpolation
    assert "ID  validation" in capsys.readouterr().out


@pytest.mark.slow
def test_dense_run_is_vanilla_fine_tuning(tiny, tmp_path):
    run(compose_config([*tiny, "moe=dense"]), tmp_path)
    record = _record(tmp_path)
    assert record["status"] == "completed" and record["method"] == "dense"
    assert record["timing"]["convert"] < 0.01 and "conversion_receipt" not in record
    ffn = record["ffn_params"]  # MiniLM: 6 FFNs of 384 x 1536 (+ biases), every one active
    assert ffn["total"] == ffn["active_per_token"] == 6 * (2 * 384 * 1536 + 1536 + 384)


@pytest.mark.parametrize("override, message", [
    ("moe.top_k=100", "moe.top_k=100 is invalid; valid: 1..moe.num_experts (64)"),
    ("moe.num_experts=100", "num_experts=100 does not divide the FFN size d_ff=1536"),
    ("trainer.lr=-1", "trainer.lr=-1 is invalid; valid: a positive finite number"),
    ("trainer.precision=fp8", "trainer.precision='fp8' is invalid; valid: fp32, bf16, fp16"),
    ("data.root=/no/such/dir", "data.root='/no/such/dir' is invalid"),
    ("moe.layers=[9]", "moe.layers entry 9 is out of range for a model with 6 layers"),
    ("moe=dense gate=learned", "gate=learned needs experts to route to, but moe=dense"),
    ("gate=learned gate.init=bogus", "gate.init='bogus' is invalid; valid: keys, random"),
])
def test_user_errors_exit_with_one_line_and_a_failed_record(tiny, tmp_path, capsys, override,
                                                            message):
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*tiny, *override.split()]), tmp_path)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err, message)
    record = _record(tmp_path)
    assert record["status"] == "failed" and message in record["error"]


def test_missing_data_file_is_named(minilm_path, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*TINY, f"data.root={tmp_path / 'data'}"]), tmp_path)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err, "missing SST-2 file")


@pytest.mark.parametrize("error, status, why", [
    (KeyboardInterrupt, "interrupted", "KeyboardInterrupt"),
    (RuntimeError, "failed", "RuntimeError: stopped mid-training")])
def test_crash_or_ctrl_c_still_leaves_a_record(tiny, tmp_path, monkeypatch, error, status, why):
    def boom(*args, **kwargs):
        raise error("stopped mid-training")

    monkeypatch.setattr(recipe, "fit", boom)
    with pytest.raises(error):
        run(compose_config(tiny), tmp_path)
    record = _record(tmp_path)
    assert (record["status"], record["error"]) == (status, why)
    assert record["config"]["task"]["name"] == "sst2" and not record["id"]  # never scored
    assert record["conversion_receipt"]["max_abs_diff"] < 1e-4  # what ran before the crash


@pytest.mark.slow
@pytest.mark.parametrize("gate, method", [("learned", "emoe_learn"), ("cosine", "gmoe")])
def test_trained_gates_run_end_to_end(tiny, tmp_path, gate, method, monkeypatch):
    routers = {}

    def fit_and_look(model, *args, **kwargs):
        layers = list(emoe_modules(model))
        routers["before"] = [m.router.weight.detach().clone() for m in layers]
        state = fit(model, *args, **kwargs)
        routers["after"] = [m.router.weight.detach().clone() for m in layers]
        return state

    def hooks_and_look(model, balance_weight):
        routers["weight"] = balance_weight
        return loop_hooks(model, balance_weight)

    monkeypatch.setattr(recipe, "fit", fit_and_look)
    monkeypatch.setattr(recipe, "loop_hooks", hooks_and_look)
    run(compose_config([*tiny, f"gate={gate}", "data.max_train_samples=16",
                        "data.max_eval_samples=8", "task.ood=[yelp]"]), tmp_path)
    record = _record(tmp_path)
    assert (record["status"], record["method"]) == ("completed", method)
    assert record["config"]["gate"]["aux_loss_weight"] == routers["weight"] == 0.01
    assert len(routers["before"]) == 2  # moe.layers=[2, 4]: both routers were trained
    assert all(not torch.equal(a, b) for a, b in zip(routers["before"], routers["after"]))
    assert 0.0 <= record["id"]["score"] <= 1.0 and record["ood"]["yelp"]["num_examples"] == 8
