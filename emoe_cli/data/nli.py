"""Inference and sentence-pair OOD sets: SNLI, SICK (entailment and relatedness), HANS, SciTail,
WikiQA (as QA-NLI) and PAWS, each read in its original release format or from the hub.

Labels are returned in each set's own space (SNLI/SICK 3-way, HANS/SciTail/WikiQA 2-way, SICK
relatedness on STS-B's 0-5 scale); `labels.BRIDGES` maps them onto a task's space when needed.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from emoe_cli.data import labels
from emoe_cli.data.common import (
    Columns,
    HubSpec,
    load_from_hub,
    read_table,
    require_file,
    split_file,
)

# Data sets whose hub repository still holds a loading script (which `datasets` >= 4 refuses)
# are read from the hub's automatic parquet export of the same data.
PARQUET_EXPORT = "refs/convert/parquet"


def _parquet_export(config: str) -> dict[str, str]:
    return {"revision": PARQUET_EXPORT, "data_dir": config}


# --- SNLI ----------------------------------------------------------------------------------

SNLI_FILES = {"validation": "val.csv", "test": "test.csv"}
SNLI_HUB = HubSpec("stanfordnlp/snli", None,
                   {"premise": "text_a", "hypothesis": "text_b", "label": "label"})


def read_snli(split: str, root: Path | None) -> datasets.Dataset:
    """SNLI, 3-way (0 entailment, 1 neutral, 2 contradiction); pairs with no gold label dropped."""
    if root is None:
        return load_from_hub(SNLI_HUB, split)
    path = require_file(root / "SNLI" / split_file(SNLI_FILES, split, "snli"), "SNLI")
    return read_table(path, Columns("premise", "hypothesis", "label"), labels.snli_label,
                      delimiter=",", quoted=True)


# --- SICK: one file, two readings -------------------------------------------------------------

SICK_FILE = Path("SICK", "SICK.txt")
SICK_SPLITS = {"train": "TRAIN", "validation": "TRIAL", "test": "TEST"}
SICK_PAIR = {"sentence_A": "text_a", "sentence_B": "text_b"}
SICK_NLI_HUB = HubSpec("RobZamp/sick", None, {**SICK_PAIR, "label": "label"},
                       options=_parquet_export("default"))
SICK_RELATEDNESS_HUB = HubSpec("RobZamp/sick", None, {**SICK_PAIR, "relatedness_score": "label"},
                               label_map=labels.sick_relatedness_to_stsb,
                               options=_parquet_export("default"))


def _read_sick(split: str, root: Path, label_column: str, parse_label,
               regression: bool = False) -> datasets.Dataset:
    """The SemEval-2014 part of SICK.txt named by `split` (TRAIN / TRIAL / TEST)."""
    part = split_file(SICK_SPLITS, split, "sick")
    path = require_file(root / SICK_FILE, "SICK")
    return read_table(path, Columns("sentence_A", "sentence_B", label_column), parse_label,
                      regression=regression, keep=lambda record: record["SemEval_set"] == part)


def read_sick_nli(split: str, root: Path | None) -> datasets.Dataset:
    """SICK entailment, 3-way like MNLI (ENTAILMENT 0, NEUTRAL 1, CONTRADICTION 2)."""
    if root is None:
        return load_from_hub(SICK_NLI_HUB, split)
    return _read_sick(split, root, "entailment_label", labels.sick_entailment_label)


def read_sick_relatedness(split: str, root: Path | None) -> datasets.Dataset:
    """SICK relatedness (1-5) rescaled to STS-B's 0-5, for scoring STS-B models out of domain."""
    if root is None:
        return load_from_hub(SICK_RELATEDNESS_HUB, split, regression=True)
    return _read_sick(split, root, "relatedness_score", labels.sick_relatedness_to_stsb,
                      regression=True)


# --- HANS -----------------------------------------------------------------------------------

HANS_FILES = {"train": "heuristics_train_set.txt", "test": "heuristics_evaluation_set.txt"}
HANS_HUB = HubSpec("jhu-cogsci/hans", None,
                   {"premise": "text_a", "hypothesis": "text_b", "label": "label"},
                   splits={"test": "validation"}, options=_parquet_export("plain_text"))


def read_hans(split: str, root: Path | None) -> datasets.Dataset:
    """HANS, 2-way (0 entailment, 1 non-entailment); `test` is its 30,000-pair evaluation set."""
    if root is None:
        return load_from_hub(HANS_HUB, split)
    path = require_file(root / "HANS" / split_file(HANS_FILES, split, "hans"), "HANS")
    return read_table(path, Columns("sentence1", "sentence2", "gold_label"), labels.hans_label)


# --- SciTail --------------------------------------------------------------------------------

SCITAIL_FILES = {"train": "scitail_1.0_train.tsv", "validation": "scitail_1.0_dev.tsv",
                 "test": "scitail_1.0_test.tsv"}
SCITAIL_FIELDS = ["premise", "hypothesis", "label"]  # the release's tsv_format has no header
SCITAIL_HUB = HubSpec("allenai/scitail", None,
                      {"premise": "text_a", "hypothesis": "text_b", "label": "label"},
                      label_map=labels.scitail_label, options=_parquet_export("tsv_format"))


def read_scitail(split: str, root: Path | None) -> datasets.Dataset:
    """SciTail, 2-way like RTE (entails 0, neutral 1 = not_entailment)."""
    if root is None:
        return load_from_hub(SCITAIL_HUB, split)
    name = split_file(SCITAIL_FILES, split, "scitail")
    path = require_file(root / "SciTail" / "tsv_format" / name, "SciTail")
    return read_table(path, Columns(*SCITAIL_FIELDS), labels.scitail_label,
                      fieldnames=SCITAIL_FIELDS)


# --- WikiQA as QA-NLI (the OOD set for QNLI) ---------------------------------------------------

WIKIQA_FILES = {"train": "WikiQA-train.tsv", "validation": "WikiQA-dev.tsv",
                "test": "WikiQA-test.tsv"}
WIKIQA_HUB = HubSpec("microsoft/wiki_qa", None,
                     {"question": "text_a", "answer": "text_b", "label": "label"},
                     label_map=labels.answer_to_nli2)


def read_wikiqa(split: str, root: Path | None) -> datasets.Dataset:
    """WikiQA question / candidate-sentence pairs in QNLI's form: 0 = the sentence answers it."""
    if root is None:
        return load_from_hub(WIKIQA_HUB, split)
    path = require_file(root / "WikiQA" / split_file(WIKIQA_FILES, split, "wikiqa"), "WikiQA")
    return read_table(path, Columns("Question", "Sentence", "Label"), labels.answer_to_nli2)


# --- PAWS (paraphrase adversaries from word scrambling) -----------------------------------------

PAWS_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
PAWS_HUB = HubSpec("google-research-datasets/paws", "labeled_final",
                   {"sentence1": "text_a", "sentence2": "text_b", "label": "label"})


def read_paws(split: str, root: Path | None) -> datasets.Dataset:
    """PAWS-Wiki (labeled_final), 1 = paraphrase like MRPC and QQP."""
    if root is None:
        return load_from_hub(PAWS_HUB, split)
    path = require_file(root / "PAWS" / split_file(PAWS_FILES, split, "paws"), "PAWS")
    return read_table(path, Columns("sentence1", "sentence2", "label"), labels.binary)
