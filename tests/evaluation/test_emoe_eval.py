"""`emoe-eval` and `eval.save_predictions`: a run's saved model, dense export and checkpoint,
evaluated without training, give back the run's numbers; saved predictions give back the
metrics; bad input is one line."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from emoe_cli.cli import evaluate as eval_cli
from emoe_cli.cli.train import run
from emoe_cli.data.labels import collapse_nli_predictions
from emoe_cli.evaluation.predictions import PredictionWriter, read_predictions, rescore
from emoe_cli.workloads.classification import classification_scorer
from tests.helpers import assert_one_line_error, compose_config

PROGRAM = "emoe-eval"


def run_overrides(data: Path, model: str, base: Path) -> list[str]:
    """Two MiniLM layers, one converted, on 16 SST-2 rows (2 steps) and 16 dev/yelp rows."""
    return ["task=sst2_local", f"data.root={data}", "logger=none", f"model.name_or_path={model}",
            "moe.layers=[1]", "moe.num_experts=16", "moe.top_k=4", "data.max_train_samples=16",
            "data.max_eval_samples=16", "task.ood=[yelp]", "trainer.epochs=1",
            "trainer.batch_size=8", f"trainer.checkpoint_dir={base / 'checkpoints'}",
            "trainer.keep_checkpoint=true", f"sweep.index_dir={base / 'index'}",
            f"moe.cluster_cache={base / 'clusters'}", "moe.save_model=true",
            "moe.export_dense=true", "eval.save_predictions=true"]


@pytest.fixture(scope="module")
def trained(shared_data, minilm2_dir, tmp_path_factory):
    """One run that saves its model, exports it dense, keeps its checkpoint and predictions."""
    base = tmp_path_factory.mktemp("trained")
    run(compose_config(run_overrides(shared_data, minilm2_dir, base)), base / "run")
    record = json.loads((base / "run" / "results.json").read_text())
    assert record["status"] == "completed"
    return base, record


def emoe_eval(monkeypatch, out: Path, *overrides: str) -> dict:
    """Run emoe-eval in this process with its output in `out`; its results.json."""
    monkeypatch.setattr(sys, "argv", [PROGRAM, *overrides, f"hydra.run.dir={out}"])
    eval_cli.cli()
    return json.loads((out / "results.json").read_text())


def logits(folder: Path, split: str = "id") -> np.ndarray:
    return np.array([row["logits"] for row in read_predictions(folder / f"{split}.jsonl")])


@pytest.mark.slow
def test_saved_model_reproduces_the_runs_scores(trained, monkeypatch, tmp_path):
    base, ran = trained
    record = emoe_eval(monkeypatch, tmp_path, f"load={base / 'run' / 'model'}",
                       "eval.save_predictions=true")
    assert record["status"] == "completed" and record["evaluated"]["kind"] == "emoe"
    assert record["id"] == ran["id"] and record["ood"] == ran["ood"]  # exactly
    assert record["config"]["moe"]["num_experts"] == 16  # the run's config, not the defaults
    assert record["method"] == ran["method"] and record["epochs"] == []
    assert record["predictions"] == ran["predictions"]  # relative to each one's folder
    assert np.array_equal(logits(tmp_path / "predictions"), logits(base / "run" / "predictions"))


@pytest.mark.slow
def test_checkpoint_reproduces_the_runs_scores(trained, monkeypatch, tmp_path):
    base, ran = trained
    (checkpoint,) = (base / "checkpoints").iterdir()
    record = emoe_eval(monkeypatch, tmp_path, f"load={checkpoint}", "eval.save_predictions=true")
    assert record["evaluated"]["kind"] == "checkpoint"
    assert record["evaluated"]["weights"] == "best"
    assert record["id"] == ran["id"] and record["ood"] == ran["ood"]
    assert np.array_equal(logits(tmp_path / "predictions"), logits(base / "run" / "predictions"))


@pytest.mark.slow
def test_dense_export_reproduces_its_scores_and_equals_every_expert(trained, monkeypatch,
                                                                   tmp_path):
    base, ran = trained
    dense = emoe_eval(monkeypatch, tmp_path / "dense", f"load={base / 'run' / 'dense_model'}",
                      "eval.save_predictions=true")
    assert dense["evaluated"]["kind"] == "dense" and dense["method"] == "emoe_dense_export"
    exported = ran["dense_export"]
    assert dense["id"] == exported["id"] and dense["ood"] == exported["ood"]
    # the saved EMoE model evaluated with every expert (moe.eval_as=dense) is the dense export
    every = emoe_eval(monkeypatch, tmp_path / "every", f"load={base / 'run' / 'model'}",
                      "moe.eval_as=dense", "eval.save_predictions=true")
    assert every["config"]["moe"]["eval_as"] == "dense"
    assert np.allclose(logits(tmp_path / "every" / "predictions"),
                       logits(tmp_path / "dense" / "predictions"), atol=1e-5)
    assert not np.allclose(logits(tmp_path / "every" / "predictions"),
                           logits(base / "run" / "predictions"), atol=1e-5)


@pytest.mark.slow
def test_a_run_folder_takes_its_config_and_the_command_lines_data(trained, monkeypatch,
                                                                   tmp_path):
    base, ran = trained
    record = emoe_eval(monkeypatch, tmp_path, f"load={base / 'run'}", "data.max_eval_samples=8",
                       "task.ood=[]")
    assert record["evaluated"]["kind"] == "emoe"  # its saved model first
    assert record["evaluated"]["run"] == str(base / "run" / "results.json")
    assert record["id"]["num_examples"] == 8 and record["ood"] == {}
    assert record["config"]["data"]["max_eval_samples"] == 8
    assert not (tmp_path / "predictions").exists()  # eval.save_predictions defaults to false


@pytest.mark.slow
def test_run_predictions_give_back_the_recorded_metrics(trained):
    base, ran = trained
    folder = base / "run"
    assert ran["predictions"] == {"id": "predictions/id.jsonl",
                                  "ood": {"yelp": "predictions/ood.yelp.jsonl"}}
    metrics = ran["config"]["task"]["metrics"]
    for split, result in [("id", ran["id"]), ("ood.yelp", ran["ood"]["yelp"])]:
        again = rescore(folder / "predictions" / f"{split}.jsonl", metrics)
        assert again["metrics"] == result["metrics"] and again["score"] == result["score"]
        rows = read_predictions(folder / "predictions" / f"{split}.jsonl")
        assert [r["index"] for r in rows] == list(range(result["num_examples"]))
        assert all(r["prediction"] == int(np.argmax(r["logits"])) for r in rows)


class FixedLogits(torch.nn.Module):
    def forward(self, logits, labels):
        return SimpleNamespace(logits=logits)


def scored(rows, metrics, tmp_path, prediction_map=None):
    """Score `rows` (logits, label) with the classification scorer, saving predictions."""
    batches = [{"logits": torch.tensor(x), "labels": torch.tensor(y)} for x, y in rows]
    writer = PredictionWriter(tmp_path)
    result = classification_scorer(metrics)(
        FixedLogits(), torch.utils.data.DataLoader(batches, batch_size=2),
        Accelerator(cpu=True), "eval", prediction_map, keep=writer.keep("ood.hans"))
    return result, tmp_path / writer.written["ood.hans"]


def test_mapped_predictions_keep_both_classes(tmp_path):
    """MNLI's 3 classes scored on 2-way HANS: the scored class and the model's own."""
    result, path = scored([([3.0, 0.0, 0.0], 0), ([0.0, 3.0, 0.0], 1), ([0.0, 0.0, 3.0], 1),
                           ([0.0, 0.0, 3.0], 0)], ["accuracy"], tmp_path,
                          collapse_nli_predictions)
    rows = read_predictions(path)
    assert [r["model_prediction"] for r in rows] == [0, 1, 2, 2]
    assert [r["prediction"] for r in rows] == [0, 1, 1, 1] and rows[3]["label"] == 0
    assert rescore(path, ["accuracy"])["metrics"] == result["metrics"] == {"accuracy": 0.75}


def test_regression_predictions_are_floats_that_rescore_exactly(tmp_path):
    values = [0.31, 4.7, 2.2, 1.9, 3.3]
    result, path = scored([([v + 0.1 * i], float(v > 2) * 5 - i * 0.3)
                           for i, v in enumerate(values)], ["pearson", "spearmanr"], tmp_path)
    rows = read_predictions(path)
    assert "logits" not in rows[0] and isinstance(rows[1]["prediction"], float)
    again = rescore(path, ["pearson", "spearmanr"])
    assert again["metrics"] == result["metrics"] and again["score"] == result["score"]


def test_a_folder_that_is_no_model_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes").mkdir()
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        emoe_eval(monkeypatch, out, f"load={tmp_path / 'notes'}")
    line = assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                                 f"load={tmp_path / 'notes'}: not a model, checkpoint or run "
                                 "folder; valid: a saved EMoE model folder", PROGRAM)
    assert "run folder with results.json" in line
    assert not out.exists()  # refused before Hydra made an output folder


def test_load_is_required(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        emoe_eval(monkeypatch, tmp_path / "out")
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "load is required; valid: a saved EMoE model folder", PROGRAM)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_runs_model_refuses_keys_that_define_it(trained, monkeypatch, tmp_path, capsys):
    base, _ = trained
    with pytest.raises(SystemExit) as exit_info:
        emoe_eval(monkeypatch, tmp_path / "out", f"load={base / 'run' / 'model'}",
                  "moe.top_k=8")
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "moe.top_k: set by the run that made load=", PROGRAM)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_checkpoint_without_its_config_needs_the_runs_overrides(trained, shared_data,
                                                                  minilm2_dir, monkeypatch,
                                                                  tmp_path, capsys):
    """An older checkpoint (no config.json beside it): under another command line the
    evaluation fails in one line and records it; under the run's own overrides it works."""
    import shutil

    base, ran = trained
    (checkpoint,) = (base / "checkpoints").iterdir()
    shutil.copytree(checkpoint, tmp_path / checkpoint.name)
    (tmp_path / checkpoint.name / "config.json").unlink()
    overrides = [o for o in run_overrides(shared_data, minilm2_dir, base)
                 if not o.startswith("moe.top_k")]
    with pytest.raises(SystemExit) as exit_info:
        emoe_eval(monkeypatch, tmp_path / "out", f"load={tmp_path / checkpoint.name}",
                  *overrides, "moe.top_k=8")
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          f"a checkpoint of run {checkpoint.name} with no config.json", PROGRAM)
    record = json.loads((tmp_path / "out" / "results.json").read_text())
    assert record["status"] == "failed" and "valid: the overrides" in record["error"]
    record = emoe_eval(monkeypatch, tmp_path / "same", f"load={tmp_path / checkpoint.name}",
                       *overrides, "moe.top_k=4")
    assert record["status"] == "completed" and record["id"] == ran["id"]


@pytest.mark.slow
def test_a_task_with_other_labels_is_refused(trained, shared_data, monkeypatch, tmp_path,
                                              capsys):
    base, _ = trained
    with pytest.raises(SystemExit) as exit_info:
        emoe_eval(monkeypatch, tmp_path, f"load={base / 'run' / 'model'}", "task=stsb",
                  f"data.root={shared_data}", "task.ood=[]")
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "task=stsb: 1 label(s), but the model at load=", PROGRAM)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_save_predictions_must_be_a_boolean(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config(["experiment=quickstart", "debug=fast", "eval.save_predictions=maybe"]),
            tmp_path)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "eval.save_predictions='maybe' is invalid; valid: true or false")
