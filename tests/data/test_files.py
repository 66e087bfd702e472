"""Bring-your-own data: a `source: file` task reads CSV / TSV / JSON / JSONL with a column map."""

import csv
import json

import pytest
from omegaconf import OmegaConf

from emoe_cli.data import common
from emoe_cli.data.common import bad_rows_policy
from emoe_cli.data.files import check_file_task, read_task_file
from emoe_cli.errors import DataError, UserError


def file_task(tmp_path, files, **overrides):
    """A task config like conf/task/custom_example.yaml, pointing at files under tmp_path."""
    config = {"name": "mine", "source": "file", "num_labels": 2, "metrics": ["accuracy"],
              "train_split": "train", "eval_split": "validation",
              "files": {split: str(tmp_path / name) for split, name in files.items()},
              "columns": {"text_a": "review", "text_b": None, "label": "stars"},
              "label_map": {1: 0, 2: 0, 3: None, 4: 1, 5: 1}, "ood": []}
    config.update(overrides)
    return OmegaConf.create(config)


def test_csv_with_quotes_and_a_label_map(tmp_path):
    (tmp_path / "train.csv").write_text('id,review,stars\n1,"Great, really",5\n2,meh,3\n'
                                        '3,"said ""no""",1\n')
    data = read_task_file(file_task(tmp_path, {"train": "train.csv"}), "train")
    assert list(zip(data["text_a"], data["label"])) == [("Great, really", 1), ('said "no"', 0)]
    assert data["text_b"] == [None, None]


def test_tsv_pair_task_without_label_map(tmp_path):
    (tmp_path / "dev.tsv").write_text("q\ts\ty\nWho?\tMe.\t1\nWhy?\tNo.\t0\n")
    task = file_task(tmp_path, {"validation": "dev.tsv"}, label_map=None,
                     columns={"text_a": "q", "text_b": "s", "label": "y"})
    data = read_task_file(task, "validation")
    assert data[0] == {"text_a": "Who?", "text_b": "Me.", "label": 1}


def test_jsonl_and_json_array(tmp_path):
    rows = [{"review": "good", "stars": 4}, {"review": "bad", "stars": 2.0}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "b.json").write_text(json.dumps(rows))
    task = file_task(tmp_path, {"train": "a.jsonl", "validation": "b.json"})
    assert read_task_file(task, "train")["label"] == [1, 0]
    assert read_task_file(task, "validation")["label"] == [1, 0]


def test_regression_reads_numbers(tmp_path):
    (tmp_path / "train.csv").write_text("review,stars\nok,3.5\nfine,-1\n")
    task = file_task(tmp_path, {"train": "train.csv"}, num_labels=1, label_map=None)
    data = read_task_file(task, "train")
    assert data["label"] == [3.5, -1.0] and data.features["label"].dtype == "float32"


@pytest.mark.parametrize("name, text, overrides, message", [
    ("t.csv", "review,stars\nok,7\n", {},
     r"t.csv:2: column 'stars' is '7', not a key of task.label_map; valid: 1, 2, 3, 4, 5"),
    ("t.csv", "review,stars\nok,2\n", {"label_map": None},
     r"t.csv:2: column 'stars' is '2'; valid: 0..1, or add a task.label_map"),
    ("t.csv", "text,stars\nok,1\n", {}, r"t.csv:2: no column 'review'; columns: text, stars"),
    ("t.jsonl", '{"review": "ok", "stars": 1}\n{"review": ""', {},
     r"t.jsonl:2: not valid JSON"),
    ("t.json", '[{"review": "ok", "stars": 1}, ["x"]]', {},
     r"t.json: record 2: expected a JSON object"),
    ("t.jsonl", '{"review": " ", "stars": 1}\n', {},
     r"t.jsonl:1: empty or missing column 'review'"),
])
def test_malformed_records_name_file_and_place(tmp_path, name, text, overrides, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message):
        read_task_file(file_task(tmp_path, {"train": name}, **overrides), "train")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"task.files.train: missing file .*nope.csv"):
        read_task_file(file_task(tmp_path, {"train": "nope.csv"}), "train")


@pytest.mark.parametrize("files, overrides, message", [
    ({"train": "a.csv"}, {}, "task.eval_split='validation' has no entry in task.files; "
                             "valid: train"),
    ({"train": "a.csv", "validation": "b.xlsx"}, {},
     r"task.files.validation='.*b.xlsx': unknown file type; valid endings: .csv, .tsv"),
    ({"train": "a.csv", "validation": "b.csv"}, {"columns": {"text_a": "review"}},
     "task.columns.label is missing"),
    ({"train": "a.csv", "validation": "b.csv"}, {"label_map": {"good": 2}},
     r"task.label_map\['good'\]=2 is invalid; valid: an id in 0..1 or null"),
])
def test_config_mistakes_are_user_errors(tmp_path, files, overrides, message):
    with pytest.raises(UserError, match=message):
        check_file_task(file_task(tmp_path, files, **overrides))


BAD_ROWS_CSV = "review,stars\ngood,5\n ,4\nbad,1\nodd,seven\nfine,4\n"


def test_bad_rows_stop_the_run_at_the_first_with_file_and_line(tmp_path):
    (tmp_path / "train.csv").write_text(BAD_ROWS_CSV)
    task = file_task(tmp_path, {"train": "train.csv"})
    with bad_rows_policy("error"), pytest.raises(DataError) as error:
        read_task_file(task, "train")
    assert f"{tmp_path / 'train.csv'}:3: empty or missing column 'review'" in str(error.value)


def test_bad_rows_are_counted_and_skipped_when_the_task_says_so(tmp_path):
    (tmp_path / "train.csv").write_text(BAD_ROWS_CSV)
    task = file_task(tmp_path, {"train": "train.csv"})
    with bad_rows_policy("skip") as tally:
        data = read_task_file(task, "train")
    assert data["text_a"] == ["good", "bad", "fine"] and data["label"] == [1, 0, 1]
    assert tally.skipped == {str(tmp_path / "train.csv"): 2}
    assert ":3:" in tally.first[str(tmp_path / "train.csv")]


def test_an_unknown_bad_rows_policy_is_named():
    with pytest.raises(UserError, match="task.bad_rows='ignore' is invalid; valid: error, skip"):
        with bad_rows_policy("ignore"):
            pass


# --- non-finite labels, extra fields, encodings and long fields (issue 20) -------------------

NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "-INF", "+Inf"]


@pytest.mark.parametrize("label", NON_FINITE)
def test_non_finite_regression_labels_are_bad_rows(tmp_path, label):
    (tmp_path / "dev.csv").write_text(f"review,stars\nok,3.5\nodd,{label}\nfine,1\n")
    task = file_task(tmp_path, {"validation": "dev.csv"}, num_labels=1, label_map=None)
    with bad_rows_policy("error"), pytest.raises(DataError) as error:
        read_task_file(task, "validation")
    assert str(error.value) == (f"{tmp_path / 'dev.csv'}:3: column 'stars' is {label!r}; "
                                "valid: a finite number (num_labels is 1: regression)")
    with bad_rows_policy("skip") as tally:
        data = read_task_file(task, "validation")
    assert data["label"] == [3.5, 1.0] and tally.skipped == {str(tmp_path / "dev.csv"): 1}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_numbers_are_bad_rows(tmp_path, literal):
    (tmp_path / "train.jsonl").write_text(f'{{"review": "ok", "stars": 2}}\n'
                                          f'{{"review": "odd", "stars": {literal}}}\n')
    task = file_task(tmp_path, {"train": "train.jsonl"}, num_labels=1, label_map=None)
    with bad_rows_policy("error"), pytest.raises(DataError, match=r"train.jsonl:2: column "
                                                 r"'stars' is -?(nan|inf); valid: a finite"):
        read_task_file(task, "train")
    with bad_rows_policy("skip") as tally:
        assert read_task_file(task, "train")["label"] == [2.0]
    assert tally.skipped == {str(tmp_path / "train.jsonl"): 1}


def test_a_label_map_to_nan_is_a_config_error(tmp_path):
    task = file_task(tmp_path, {"train": "a.csv", "validation": "b.csv"}, num_labels=1,
                     label_map={"good": 1.0, "odd": float("nan")})
    with pytest.raises(UserError, match=r"task.label_map\['odd'\]=nan is invalid"):
        check_file_task(task)


@pytest.mark.parametrize("name, text", [
    ("t.csv", "review,stars\ngood,5\n\"odd, really\",1,extra\nfine,4\n"),
    ("t.tsv", "review\tstars\ngood\t5\nodd\t1\t\nfine\t4\n"),  # a trailing tab is a field too
])
def test_rows_with_too_many_fields_are_bad_rows(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    task = file_task(tmp_path, {"train": name})
    with bad_rows_policy("error"), pytest.raises(DataError) as error:
        read_task_file(task, "train")
    assert str(error.value).startswith(f"{tmp_path / name}:3: 3 fields, expected 2")
    with bad_rows_policy("skip") as tally:
        assert read_task_file(task, "train")["text_a"] == ["good", "fine"]
    assert tally.skipped == {str(tmp_path / name): 1}


@pytest.mark.parametrize("name, data, line", [
    ("t.csv", "review,stars\ngood,5\ncafé,4\n".encode("latin-1"), 3),
    ("t.jsonl", '{"review": "ok", "stars": 1}\n{"review": "café", "stars": 4}\n'
     .encode("cp1252"), 2),
    ("t.csv", b"\x1f\x8b\x08\x00" + bytes(range(256)), 1),  # a gzip file named .csv
])
@pytest.mark.parametrize("policy", ["error", "skip"])
def test_a_file_that_is_not_utf8_is_named_under_either_policy(tmp_path, name, data, line,
                                                              policy):
    (tmp_path / name).write_bytes(data)
    with bad_rows_policy(policy), pytest.raises(DataError) as error:
        read_task_file(file_task(tmp_path, {"train": name}), "train")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / name}:{line}: byte 0x")
    assert "data files must be UTF-8 text" in message and "\n" not in message


def test_fields_longer_than_the_csv_default_load(tmp_path):
    long_review = "word " * 40_000  # 200,000 characters: over the csv module's 131,072
    (tmp_path / "t.csv").write_text(f'review,stars\n"{long_review}",5\nshort,1\n')
    data = read_task_file(file_task(tmp_path, {"train": "t.csv"}), "train")
    assert data["text_a"] == [long_review.strip(), "short"]


@pytest.fixture
def csv_limit():
    """Sets the csv module's process-wide field size limit back after the test."""
    before = csv.field_size_limit()
    yield
    csv.field_size_limit(before)


def test_a_field_over_the_limit_is_named_with_its_line(tmp_path, monkeypatch, csv_limit):
    monkeypatch.setattr(common, "FIELD_LIMIT", 1000)
    (tmp_path / "t.csv").write_text(f'review,stars\ngood,5\n"unclosed,1\n{"x" * 2000}\n')
    for policy in ("error", "skip"):
        with bad_rows_policy(policy), pytest.raises(DataError) as error:
            read_task_file(file_task(tmp_path, {"train": "t.csv"}), "train")
        assert str(error.value) == (f"{tmp_path / 't.csv'}:3: a field longer than 1,000 "
                                    "characters (an unclosed quote?); valid: shorter texts, "
                                    "quotes closed")

