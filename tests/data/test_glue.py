"""GLUE readers: the real glue_data files, malformed rows, and the nyu-mll/glue hub path."""

import datasets
import pytest

from emoe_cli.data.common import bad_rows_policy
from emoe_cli.data.sources import load_source
from emoe_cli.errors import DataError
from tests.data import fakes


@pytest.mark.parametrize("name, split, rows, labels", [
    ("cola", "validation", 1043, [0, 1]),
    ("cola_ood_dev", "test", 516, [0, 1]),
    ("mrpc", "validation", 408, [0, 1]),
    ("mrpc", "train", 3668, [0, 1]),
    ("rte", "validation", 277, [0, 1]),
    ("qnli", "validation", 5463, [0, 1]),
])
def test_real_classification_files(shared_data, name, split, rows, labels):
    data = load_source(name, split, shared_data)
    assert len(data) == rows and sorted(set(data["label"])) == labels
    assert data.column_names == ["text_a", "text_b", "label"]


def test_cola_has_no_header_and_no_second_text(shared_data):
    dev = load_source("cola", "validation", shared_data)
    assert dev[0] == {"text_a": "The sailors rode the breeze clear of the rocks.",
                      "text_b": None, "label": 1}


def test_mrpc_keeps_stray_quotes_and_ignores_the_byte_order_mark(shared_data):
    first = load_source("mrpc", "validation", shared_data)[0]
    assert first["text_b"].startswith('"The foodservice pie business') and first["label"] == 1


def test_rte_and_qnli_label_words_use_the_hub_ids(shared_data):
    rte = load_source("rte", "validation", shared_data)
    assert rte[0]["text_b"] == "Christopher Reeve had an accident." and rte[0]["label"] == 1
    qnli = load_source("qnli", "validation", shared_data)
    assert qnli[0]["text_a"].startswith("What came into force") and qnli[0]["label"] == 0


def test_stsb_is_float_scores(shared_data):
    dev = load_source("stsb", "validation", shared_data)
    assert len(dev) == 1500 and dev.features["label"].dtype == "float32"
    assert dev[0]["label"] == 5.0 and dev[1]["label"] == 4.75
    assert 0.0 <= min(dev["label"]) and max(dev["label"]) <= 5.0


def test_qnli_without_train_file_names_it(shared_data):
    with pytest.raises(DataError, match=r"missing QNLI file .*QNLI/train.tsv"):
        load_source("qnli", "train", shared_data)


def test_unknown_local_split_lists_the_valid_ones(shared_data):
    with pytest.raises(DataError, match="rte: no split 'test' .* valid: train, validation"):
        load_source("rte", "test", shared_data)


def _write(root, folder, name, text):
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / name).write_text(text)


def test_mnli_reads_gold_label_from_each_dev_file(tmp_path):
    header = "index\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
    _write(tmp_path, "MNLI", "dev_matched.tsv",
           header + "0\tfiction\tA man sleeps.\tA man rests.\tentailment\tentailment\n"
           "1\tfiction\tA cat.\tA dog.\tcontradiction\tcontradiction\n")
    _write(tmp_path, "MNLI", "dev_mismatched.tsv",
           header + "0\tletters\tHi there.\tSomeone greets.\tneutral\tneutral\n")
    matched = load_source("mnli", "validation_matched", tmp_path)
    assert list(zip(matched["text_b"], matched["label"])) == [("A man rests.", 0), ("A dog.", 2)]
    assert load_source("mnli_mismatched", "validation_mismatched", tmp_path)["label"] == [1]


def test_qqp_skips_ragged_rows_but_not_bad_labels(tmp_path, caplog):
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    _write(tmp_path, "QQP", "dev.tsv", header + "1\t1\t2\tWhy?\tHow come?\t1\n"
           "2\t3\t4\tWas it real? What is the evidence?\t0\n"
           "3\t5\t6\tWhere?\tWhen?\t0\n")
    data = load_source("qqp", "validation", tmp_path)
    assert data["label"] == [1, 0] and "skipped 1 rows" in caplog.text
    _write(tmp_path, "QQP", "dev.tsv", header + "1\t1\t2\tWhy?\tHow come?\tyes\n")
    with pytest.raises(DataError, match=r"dev.tsv:2: column 'is_duplicate' is 'yes'"):
        load_source("qqp", "validation", tmp_path)


@pytest.mark.parametrize("folder, name, text, message", [
    ("RTE", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tcontradiction\n",
     r"RTE/dev.tsv:2: column 'label' is 'contradiction'; valid: entailment, not_entailment"),
    ("RTE", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\t \tentailment\n",
     r"RTE/dev.tsv:2: empty or missing column 'sentence2'"),
    ("STS-B", "dev.tsv", "index\tsentence1\tsentence2\tscore\n0\tA.\tB.\t7.5\n",
     r"STS-B/dev.tsv:2: column 'score' is 7.5; valid: a number in \[0, 5\]"),
    ("STS-B", "dev.tsv", "index\tsentence1\tsentence2\tscore\n0\tA.\tB.\tNaN\n",
     r"STS-B/dev.tsv:2: column 'score' is nan; valid: a number in \[0, 5\]"),
    ("STS-B", "train.tsv", "index\tsentence1\tsentence2\tscore\n0\tA.\tB.\t-inf\n",
     r"STS-B/train.tsv:2: column 'score' is -inf; valid: a number in \[0, 5\]"),
    ("RTE", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\tx\n",
     r"RTE/dev.tsv:2: 5 fields, expected 4 \(a delimiter inside a text\?\)"),
    ("CoLA", "dev.tsv", "gj04\t1\t\tFine.\ngj04\t2\t*\tBad.\n",
     r"CoLA/dev.tsv:2: column 'label' is '2'; valid: 0, 1"),
    ("MRPC", "dev.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\n1\t1\t2\tA.\n",
     r"MRPC/dev.tsv:2: no column '#2 String'; columns: Quality, #1 ID, #2 ID, #1 String"),
])
def test_malformed_rows_name_file_line_and_what_is_valid(tmp_path, folder, name, text, message):
    _write(tmp_path, folder, name, text)
    task = {"RTE": "rte", "STS-B": "stsb", "CoLA": "cola", "MRPC": "mrpc"}[folder]
    split = "train" if name == "train.tsv" else "validation"
    with pytest.raises(DataError, match=message):
        load_source(task, split, tmp_path)


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_a_glue_file_that_is_not_utf8_is_named(tmp_path, policy):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_bytes("sentence\tlabel\nfine\t1\nna\xefve\t0\n"
                                                 .encode("latin-1"))
    with bad_rows_policy(policy), pytest.raises(DataError, match=(
            r"SST-2/dev.tsv:3: byte 0xef is not UTF-8; data files must be UTF-8 text")):
        load_source("sst2", "validation", tmp_path)


def _glue_table(columns, labels, label_names=None):
    """A hub-like table: text columns, a ClassLabel (or float) label and an idx column."""
    n = len(labels)
    data = {column: [f"{column} {i}" for i in range(n)] for column in columns}
    feats = {column: datasets.Value("string") for column in columns}
    data["label"], data["idx"] = labels, list(range(n))
    feats["label"] = (datasets.ClassLabel(names=label_names) if label_names
                      else datasets.Value("float32"))
    feats["idx"] = datasets.Value("int32")
    return datasets.Dataset.from_dict(data, features=datasets.Features(feats))


@pytest.mark.parametrize("name, split, columns, label_names", [
    ("cola", "validation", ["sentence"], ["unacceptable", "acceptable"]),
    ("sst2", "train", ["sentence"], ["negative", "positive"]),
    ("mrpc", "validation", ["sentence1", "sentence2"], ["not_equivalent", "equivalent"]),
    ("qqp", "validation", ["question1", "question2"], ["not_duplicate", "duplicate"]),
    ("mnli", "validation_matched", ["premise", "hypothesis"],
     ["entailment", "neutral", "contradiction"]),
    ("mnli_mismatched", "validation_mismatched", ["premise", "hypothesis"],
     ["entailment", "neutral", "contradiction"]),
    ("qnli", "validation", ["question", "sentence"], ["entailment", "not_entailment"]),
    ("rte", "train", ["sentence1", "sentence2"], ["entailment", "not_entailment"]),
])
def test_glue_hub_config_split_and_columns(monkeypatch, name, split, columns, label_names):
    labels = [0, 1, len(label_names) - 1]
    hub = fakes.install(monkeypatch, {"nyu-mll/glue": _glue_table(columns, labels, label_names)})
    data = load_source(name, split, None)
    config = "mnli" if name == "mnli_mismatched" else name
    assert hub.calls == [("nyu-mll/glue", config, split, {})]
    assert data.column_names == ["text_a", "text_b", "label"]
    assert data["label"] == labels and data.features["label"].dtype == "int64"
    assert data["text_a"][0] == f"{columns[0]} 0"
    assert data["text_b"][0] == (f"{columns[1]} 0" if len(columns) == 2 else None)


def test_glue_hub_stsb_stays_float_and_unlabelled_test_rows_are_dropped(monkeypatch):
    table = _glue_table(["sentence1", "sentence2"], [4.5, 0.25])
    fakes.install(monkeypatch, {"nyu-mll/glue": table})
    assert load_source("stsb", "validation", None)["label"] == [4.5, 0.25]
    fakes.install(monkeypatch, {"nyu-mll/glue": _glue_table(["sentence1", "sentence2"],
                                                            [-1, -1], None)})
    with pytest.raises(DataError, match="nyu-mll/glue/stsb split 'test' has no labelled rows"):
        load_source("stsb", "test", None)


def test_cola_ood_dev_without_root_reads_the_public_release(monkeypatch):
    hub = fakes.install(monkeypatch, {"csv": {"source": ["clc95"], "label": [0],
                                              "original_label": ["*"],
                                              "sentence": ["Him left."]}})
    data = load_source("cola_ood_dev", "test", None)
    path, config, split, options = hub.calls[0]
    assert (path, config, split) == ("csv", None, "train")
    assert options["data_files"].startswith("zip://cola_public/raw/out_of_domain_dev.tsv::")
    assert data[0] == {"text_a": "Him left.", "text_b": None, "label": 0}
