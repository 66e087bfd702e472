"""Task presets, OOD label bridges, regression, and tiny end-to-end runs (a pair task, STS-B)."""

import json
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
import transformers
from accelerate import Accelerator
from omegaconf import OmegaConf

from emoe_cli.cli.train import run
from emoe_cli.config.checks import available_choices
from emoe_cli.data.instruction_task import check_instruction_task
from emoe_cli.data.labels import collapse_nli_predictions
from emoe_cli.data.tasks import check_task, load_task_data, read_ood
from emoe_cli.errors import DataError, MissingData, UserError
from emoe_cli.evaluation.evaluate import predict
from emoe_cli.models.pretrained import load_classifier
from emoe_cli.workloads import task_kind
from emoe_cli.workloads.classification import classification_scorer
from emoe_cli.workloads.image import check_image_task
from emoe_cli.workloads.registry import WORKLOADS
from tests.data import fakes
from tests.helpers import compose_config

GLUE_PRESETS = {  # task -> (metrics, num_labels, eval split, OOD sets as GLUE-X pairs them)
    "cola": (["matthews_correlation"], 2, "validation", ["cola_ood"]),
    "sst2": (["accuracy"], 2, "validation",
             ["imdb", "yelp_polarity", "amazon_polarity", "flipkart"]),
    "mrpc": (["accuracy", "f1"], 2, "validation", ["qqp", "rte", "hans", "twitter"]),
    "qqp": (["accuracy", "f1"], 2, "validation", ["mrpc", "rte", "hans", "twitter"]),
    "stsb": (["pearson", "spearmanr"], 1, "validation", ["sick_relatedness"]),
    "mnli": (["accuracy"], 3, "validation_matched", ["mnli_mismatched", "snli", "sick_nli"]),
    "qnli": (["accuracy"], 2, "validation", ["qnli_ood"]),
    "rte": (["accuracy"], 2, "validation", ["mrpc", "qqp", "hans", "scitail"]),
}


@pytest.mark.parametrize("name", sorted(GLUE_PRESETS))
def test_glue_presets_carry_official_metrics_and_ood_sets(name):
    task = compose_config([f"task={name}"]).task
    assert (list(task.metrics), task.num_labels, task.eval_split, list(task.ood)) == \
        GLUE_PRESETS[name]
    assert list(task.ood_extra) == []  # extras are opt-in
    assert task.name == task.source == name
    check_task(task)


def test_every_task_preset_passes_the_checks():
    assert set(GLUE_PRESETS) < set(available_choices("task"))
    checks = {"text": check_task, "image": check_image_task,
              "causal_lm": check_instruction_task}  # per task.kind
    for name in available_choices("task"):
        task = compose_config([f"task={name}"]).task
        assert task_kind(task) in WORKLOADS
        checks[task_kind(task)](task)


def test_only_hans_needs_its_predictions_mapped():
    bridges = check_task(compose_config(["task=mnli", "task.ood_extra=[hans]"]).task)
    assert bridges["hans"].predictions is collapse_nli_predictions
    assert all(b.predictions is None and b.gold is None
               for name, b in bridges.items() if name != "hans")
    rte = check_task(compose_config(["task=rte", "task.ood_extra=[snli,sick_nli]"]).task)
    assert all(rte[name].gold is not None for name in ("snli", "sick_nli", "mrpc", "qqp"))
    assert rte["scitail"].gold is None and rte["hans"].gold is None
    mrpc = check_task(compose_config(["task=mrpc"]).task)
    assert [name for name, b in mrpc.items() if b.gold is not None] == ["rte", "hans"]


@pytest.mark.parametrize("overrides, message", [
    (["task=rte", "task.ood=[imdb]"],
     r"task.ood: 'imdb' \(negative, positive\) cannot score a rte model \(entailment, "
     r"not_entailment\); valid: hans, mnli, mnli_mismatched, mrpc, paws, qnli, qnli_ood, qqp, "
     r"rte, scitail, sick_nli, snli, twitter, wikiqa$"),
    (["task=stsb", "task.ood=[snli2]"],
     "task.ood: unknown data set 'snli2'; valid: sick_relatedness, stsb"),
    (["task=mnli", "task.num_labels=2"],
     "task.num_labels=2 does not fit task.source=mnli .*; valid: 3"),
    (["task=sst2", "task.source=sst3"], "task.source: unknown data set 'sst3'; valid: amazon"),
    (["task=cola", "task.metrics=[mcc]"], "task.metrics: unknown metric 'mcc'; valid: accuracy"),
])
def test_task_config_mistakes_fail_early(overrides, message):
    with pytest.raises(UserError, match=message):
        check_task(compose_config(overrides).task)


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return transformers.AutoTokenizer.from_pretrained(minilm_path)


def data_cfg(root, limit=None):
    return OmegaConf.create({"root": None if root is None else str(root), "subset_seed": 0,
                             "max_train_samples": limit, "max_eval_samples": limit})


def test_rte_scores_snli_and_sick_as_two_way(shared_data, tokenizer):
    task = compose_config(["task=rte", "task.ood=[snli,sick_nli]"]).task
    bridges = check_task(task)
    snli = read_ood(task, "snli", shared_data, bridges["snli"])
    assert len(snli) == 9824 and sorted(set(snli["label"])) == [0, 1]
    assert snli["label"].count(0) == 3368  # SNLI test's entailment pairs stay entailment
    sick = read_ood(task, "sick_nli", shared_data, bridges["sick_nli"])
    assert len(sick) == 4906 and sorted(set(sick["label"])) == [0, 1]
    data = load_task_data(task, data_cfg(shared_data, 16), tokenizer, 64)
    assert set(data.ood) == {"snli", "sick_nli"} and data.prediction_maps == {}
    assert set(data.ood["snli"]["labels"]) <= {0, 1}


def _nli_table(labels):
    n = len(labels)
    return {"premise": [f"p{i}" for i in range(n)], "hypothesis": [f"h{i}" for i in range(n)],
            "label": labels}


def test_mnli_from_the_hub_maps_hans_predictions(monkeypatch, tokenizer):
    hub = fakes.install(monkeypatch, {
        "nyu-mll/glue": _nli_table([0, 1, 2, 1]), "stanfordnlp/snli": _nli_table([2, -1, 0]),
        "jhu-cogsci/hans": _nli_table([0, 1]),
        "RobZamp/sick": {"sentence_A": ["a"], "sentence_B": ["b"], "label": [1]}})
    task = compose_config(["task=mnli", "task.ood_extra=[hans]"]).task
    data = load_task_data(task, data_cfg(None), tokenizer, 32)
    assert [(path, config, split) for path, config, split, _ in hub.calls] == [
        ("nyu-mll/glue", "mnli", "train"), ("nyu-mll/glue", "mnli", "validation_matched"),
        ("nyu-mll/glue", "mnli", "validation_mismatched"), ("stanfordnlp/snli", None, "test"),
        ("RobZamp/sick", None, "test"), ("jhu-cogsci/hans", None, "validation")]
    assert data.ood["snli"]["labels"] == [2, 0]  # still 3-way for a 3-way model
    assert set(data.prediction_maps) == {"hans"}


def test_ood_set_missing_under_root_comes_from_the_hub(shared_data, monkeypatch, tokenizer):
    task = compose_config(["task=rte", "task.ood=[scitail]"]).task
    fakes.offline(monkeypatch)
    with pytest.raises(DataError, match=r"task.ood: 'scitail' is neither under data.root "
                                        r"\(.*SciTail does not exist\) nor loadable from the hub "
                                        r"\(ConnectionError\); add it there or leave it out: "
                                        r"task.ood=\[\]"):
        load_task_data(task, data_cfg(shared_data, 4), tokenizer, 32)
    fakes.install(monkeypatch, {"allenai/scitail": _nli_table(["entails", "neutral"])})
    data = load_task_data(task, data_cfg(shared_data, 4), tokenizer, 32)
    assert data.ood["scitail"]["labels"] == [0, 1]


def _sst2_root(root):
    (root / "SST-2").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (root / "SST-2" / name).write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    return root


def test_an_absent_glue_x_folder_is_skipped_and_named(tmp_path, tokenizer, caplog):
    task = compose_config(["task=sst2", "task.ood=[flipkart]"]).task
    root = _sst2_root(tmp_path)
    data = load_task_data(task, data_cfg(root), tokenizer, 32)
    expected = f"needs {root}/datasets_self_collected/flipkart, which does not exist"
    assert data.ood == {} and list(data.missing_ood) == ["flipkart"]
    assert expected in data.missing_ood["flipkart"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and expected in warnings[0] and "skipped" in warnings[0]
    strict = OmegaConf.merge(data_cfg(root), {"ood_missing": "error"})
    with pytest.raises(MissingData, match=expected):
        load_task_data(task, strict, tokenizer, 32)
    with pytest.raises(UserError, match=r"data.ood_missing='maybe' is invalid; valid: skip, "
                                        r"error"):
        load_task_data(task, OmegaConf.merge(data_cfg(root), {"ood_missing": "maybe"}),
                       tokenizer, 32)
    datasets.Dataset.from_dict({"sentence": ["nice", "meh"], "label": ["positive", "neutral"]}
                               ).save_to_disk(str(root / "datasets_self_collected" / "flipkart"))
    data = load_task_data(task, strict, tokenizer, 32)
    assert data.ood["flipkart"]["labels"] == [1, 0] and data.missing_ood == {}


def test_file_task_reads_its_files_and_extra_ood_split(tmp_path, tokenizer):
    for name in ("train.csv", "dev.csv", "other.csv"):
        (tmp_path / name).write_text("review,stars\ngreat,5\nawful,1\nso-so,3\n")
    task = compose_config(["task=custom_example", f"task.files.train={tmp_path}/train.csv",
                           f"task.files.validation={tmp_path}/dev.csv",
                           f"task.files.shifted={tmp_path}/other.csv",
                           "task.ood=[shifted]"]).task
    data = load_task_data(task, data_cfg(None), tokenizer, 32)
    assert data.train["labels"] == [1, 0] and data.ood["shifted"]["labels"] == [1, 0]


def test_stsb_is_regression_end_to_end_in_the_data_and_the_loss(shared_data, tokenizer,
                                                                 tmp_path):
    task = compose_config(["task=stsb"]).task
    data = load_task_data(task, data_cfg(shared_data, 8), tokenizer, 32)
    for split in (data.train, data.validation, data.ood["sick_relatedness"]):
        assert split.features["labels"].dtype.startswith("float")
    small = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                    num_hidden_layers=1, num_attention_heads=4,
                                    intermediate_size=64)
    transformers.BertModel(small).save_pretrained(tmp_path)
    model = load_classifier(str(tmp_path), task.num_labels, tokenizer)
    assert model.config.problem_type == "regression" and model.config.num_labels == 1
    batch = tokenizer(["a cat", "a dog sleeps"], ["a cat", "nothing"], padding=True,
                      return_tensors="pt")
    targets = torch.tensor([5.0, 0.4])
    out = model(**batch, labels=targets)
    mse = torch.nn.functional.mse_loss(out.logits.squeeze(-1), targets)
    assert torch.allclose(out.loss, mse)
    rows = [{**{k: v[i] for k, v in batch.items()}, "labels": targets[i]} for i in range(2)]
    predictions, labels = predict(model, torch.utils.data.DataLoader(rows, batch_size=2),
                                  Accelerator(cpu=True))
    assert predictions.shape == (2,) and labels.tolist() == pytest.approx([5.0, 0.4])
    assert np.allclose(predictions, out.logits.squeeze(-1).detach().numpy(), atol=1e-5)


def test_ood_evaluation_applies_the_prediction_map():
    class FixedLogits(torch.nn.Module):
        def forward(self, logits, labels):
            return SimpleNamespace(logits=logits)

    rows = [{"logits": torch.tensor(x), "labels": torch.tensor(y)} for x, y in [
        ([3.0, 0.0, 0.0], 0),   # entailment -> entailment: right
        ([0.0, 3.0, 0.0], 1),   # neutral -> non-entailment: right
        ([0.0, 0.0, 3.0], 1),   # contradiction -> non-entailment: right
        ([0.0, 0.0, 3.0], 0),   # contradiction -> non-entailment: wrong
    ]]
    loader = torch.utils.data.DataLoader(rows, batch_size=2)
    accelerator = Accelerator(cpu=True)
    evaluate = classification_scorer(["accuracy"])
    mapped = evaluate(FixedLogits(), loader, accelerator, "OOD hans", collapse_nli_predictions)
    assert mapped == {"metrics": {"accuracy": 0.75}, "score": 0.75, "num_examples": 4}
    raw = evaluate(FixedLogits(), loader, accelerator, "OOD hans")
    assert raw["metrics"]["accuracy"] == 0.5  # unmapped, 2 (contradiction) never equals 1
    assert np.isclose(raw["score"], 0.5)


TINY = ["experiment=quickstart", "debug=fast", "data.max_train_samples=32",
        "data.max_eval_samples=16"]


@pytest.mark.parametrize("overrides, message", [
    (["task.ood_extra=[nope]"], "task.ood_extra: unknown data set 'nope'; valid: amazon, "
                                "amazon_polarity, flipkart, imdb, sst2, yelp, yelp_polarity"),
    (["task.ood=[flipkart]", "data.ood_missing=error"],
     "task.ood: GLUE-X's 'flipkart' needs {root}/datasets_self_collected/flipkart, which does "
     "not exist; expected a datasets.save_to_disk folder (dataset_info.json, state.json, "
     "data-*.arrow) with columns sentence, label"),
])
def test_bad_ood_input_exits_with_one_line(shared_data, minilm_path, tmp_path, capsys,
                                           overrides, message):
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*TINY, f"data.root={shared_data}", *overrides]), tmp_path)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("emoe-run: error: ")]
    assert lines == [f"emoe-run: error: {message.format(root=shared_data)}"]


@pytest.mark.slow
def test_a_run_without_glue_x_folders_records_what_it_skipped(minilm_path, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    root = _sst2_root(tmp_path / "data")  # a tiny SST-2, no GLUE-X folders: OOD on its dev set
    run(compose_config([*TINY, f"data.root={root}", "task=sst2", "task.ood=[sst2,flipkart]"]),
        tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "completed" and list(record["ood"]) == ["sst2"]
    assert list(record["ood_missing"]) == ["flipkart"]
    assert "datasets_self_collected/flipkart" in record["ood_missing"]["flipkart"]
    assert "OOD skipped (absent): flipkart" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("task, metrics, ood", [
    (["task=rte", "task.ood=[snli,sick_nli]"], {"accuracy"}, {"snli", "sick_nli"}),
    (["task=stsb"], {"pearson", "spearmanr"}, {"sick_relatedness"}),
])
def test_tiny_runs_record_the_task_metrics_and_ood_sets(shared_data, minilm_path, tmp_path,
                                                        task, metrics, ood):
    run(compose_config([*TINY, f"data.root={shared_data}", *task]), tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "completed"
    assert set(record["ood"]) == ood
    for result in [record["id"], *record["ood"].values()]:
        assert set(result["metrics"]) == metrics and result["num_examples"] == 16
        assert all(-1.0 <= value <= 1.0 for value in result["metrics"].values())
        assert result["score"] == pytest.approx(np.mean(list(result["metrics"].values())))
