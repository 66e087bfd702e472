"""Alpaca-format data: the prompt template, response-only labels, truncation and reading."""

import json

import datasets
import pytest
from omegaconf import OmegaConf

from emoe_cli.data.common import bad_rows_policy
from emoe_cli.data.instruction_task import check_instruction_task, train_and_heldout
from emoe_cli.data.instructions import (
    PROMPT_WITH_INPUT,
    encode_example,
    format_prompt,
    read_instructions,
    truncate,
)
from emoe_cli.errors import DataError, UserError
from tests.helpers import word_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer([PROMPT_WITH_INPUT, "Say hi there friend"])


def test_templates_are_alpaca_with_and_without_input():
    assert format_prompt("Add 2 and 3.") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n")
    assert format_prompt("Translate.", "Bonjour") == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTranslate.\n\n### Input:\nBonjour\n\n### Response:\n")
    assert format_prompt("Add 2 and 3.", "  ") == format_prompt("Add 2 and 3.")


def test_only_response_tokens_and_eos_are_labelled(tokenizer):
    example = encode_example("Say hi", "", "hi there", tokenizer, max_length=512)
    # By hand: "Below is an instruction that describes a task . Write a response that
    # appropriately completes the request . ### Instruction : Say hi ### Response :" = 26
    ids, labels = example["input_ids"], example["labels"]
    assert labels[:26] == [-100] * 26
    assert labels[26:] == ids[26:] == [*tokenizer("hi there").input_ids, tokenizer.eos_token_id]
    assert tokenizer.decode(ids[26:28]) == "hi there"
    assert example["attention_mask"] == [1] * 29


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_bos():
    prompt, response = truncate(list(range(10)), [100, 101, 102], max_length=8, keep_prefix=1)
    assert (prompt, response) == ([0, 6, 7, 8, 9], [100, 101, 102])
    assert truncate([1, 2], [3], max_length=8) == ([1, 2], [3])  # fits: unchanged


def test_truncation_cuts_a_long_response_only_past_half_the_length():
    assert truncate(list(range(10)), list(range(100, 120)), 8) == ([6, 7, 8, 9],
                                                                   [100, 101, 102, 103])
    assert truncate([1, 2], list(range(100, 120)), 8) == ([1, 2], list(range(100, 106)))


def test_a_long_example_keeps_its_whole_response(tokenizer):
    example = encode_example("Say hi " * 40, "there " * 40, "hi there", tokenizer, 16)
    assert len(example["input_ids"]) == len(example["labels"]) == 16
    response = [*tokenizer("hi there").input_ids, tokenizer.eos_token_id]
    assert example["labels"][-3:] == example["input_ids"][-3:] == response
    assert example["labels"][:-3] == [-100] * 13
    assert tokenizer.decode(example["input_ids"][-6:-3]) == "### Response :"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_reader_accepts_jsonl_json_and_folders(tmp_path):
    rows = [{"instruction": "a", "output": "b"}, {"instruction": "c", "input": "d", "output": ""}]
    _write_jsonl(tmp_path / "x.jsonl", rows)
    (tmp_path / "y.json").write_text(json.dumps(rows[:1]))
    data = read_instructions(tmp_path)
    assert data.to_list() == [{"instruction": "a", "input": "", "output": "b"},
                              {"instruction": "c", "input": "d", "output": ""},
                              {"instruction": "a", "input": "", "output": "b"}]


def test_a_record_without_output_names_file_line_and_key(tmp_path):
    path = _write_jsonl(tmp_path / "t.jsonl", [{"instruction": "a", "output": "b"},
                                               {"instruction": "c", "response": "d"}])
    with pytest.raises(DataError, match=rf"{path}:2: no text 'output'"):
        read_instructions(path)
    with bad_rows_policy("skip") as bad:
        assert len(read_instructions(path)) == 1
    assert bad.skipped == {str(path): 1}


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(DataError, match="task.files.train: missing file"):
        read_instructions(tmp_path / "none.jsonl", "task.files.train")


def _task(**overrides):
    base = {"train_split": "train", "eval_split": "validation", "hub_id": "tatsu-lab/alpaca",
            "files": {"train": None, "validation": None}, "ood": [], "heldout_fraction": 0.25}
    return OmegaConf.create({**base, **overrides})


def test_heldout_split_is_carved_from_train_by_a_fixed_seed(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]
    task = _task(files={"train": str(_write_jsonl(tmp_path / "t.jsonl", rows))})
    train, heldout = train_and_heldout(task, seed=0)
    assert (len(train), len(heldout)) == (15, 5)
    assert not set(train["instruction"]) & set(heldout["instruction"])
    assert train_and_heldout(task, seed=0)[1]["instruction"] == heldout["instruction"]


def test_ood_names_must_be_extra_files():
    with pytest.raises(UserError, match="task.ood: 'yelp' is not an extra key of task.files"):
        check_instruction_task(_task(files={"train": "t.jsonl"}, ood=["yelp"]))
    with pytest.raises(UserError, match="task.files.train is missing"):
        check_instruction_task(_task(files={"validation": "v.jsonl"}))


def test_without_files_the_hub_set_is_read_in_alpacas_own_columns(monkeypatch):
    """tatsu-lab/alpaca ships instruction, input, output and a pre-rendered `text` column."""
    rows = {"instruction": [f"q{i}" for i in range(8)], "input": [""] * 8,
            "output": [f"a{i}" for i in range(8)], "text": ["rendered"] * 8}
    asked = []

    def fake_load_dataset(name, split):
        asked.append((name, split))
        return datasets.Dataset.from_dict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    train, heldout = train_and_heldout(_task(), seed=0)
    assert asked == [("tatsu-lab/alpaca", "train")]  # no validation split: carved from train
    assert (len(train), len(heldout)) == (6, 2)
    assert set(train.column_names) == {"instruction", "input", "output"}


def test_an_unreachable_hub_says_to_use_local_files(monkeypatch):
    def offline(name, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"could not load tatsu-lab/alpaca .*task.files.train="):
        train_and_heldout(_task(), seed=0)
