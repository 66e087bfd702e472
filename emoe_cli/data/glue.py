"""The eight GLUE tasks, read from the classic `glue_data/<TASK>/` files or from `nyu-mll/glue`.

Label ids follow `nyu-mll/glue`: CoLA 0 unacceptable / 1 acceptable, SST-2 0 negative /
1 positive, MRPC and QQP 0 not / 1 paraphrase, STS-B a float score in [0, 5], MNLI 0 entailment /
1 neutral / 2 contradiction, QNLI and RTE 0 entailment / 1 not_entailment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets

from emoe_cli.data import labels
from emoe_cli.data.common import (
    Columns,
    HubSpec,
    LabelParser,
    load_from_hub,
    read_table,
    require_file,
    split_file,
)

DEV_FILES = {"train": "train.tsv", "validation": "dev.tsv"}
MNLI_FILES = {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
              "validation_mismatched": "dev_mismatched.tsv"}
COLA_FIELDS = ["source", "label", "original_label", "sentence"]  # CoLA files have no header


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task's local layout (folder, files, columns, label text) and its hub columns."""

    folder: str
    columns: Columns
    parse_label: LabelParser
    hub_columns: dict[str, str]
    files: dict[str, str] = field(default_factory=lambda: dict(DEV_FILES))
    fieldnames: list[str] | None = None
    skip_ragged: bool = False
    regression: bool = False


def _pair(first: str, second: str) -> dict[str, str]:
    return {first: "text_a", second: "text_b", "label": "label"}


GLUE: dict[str, GlueTask] = {
    "cola": GlueTask("CoLA", Columns("sentence", None, "label"), labels.binary,
                     {"sentence": "text_a", "label": "label"}, fieldnames=COLA_FIELDS),
    "sst2": GlueTask("SST-2", Columns("sentence", None, "label"), labels.binary,
                     {"sentence": "text_a", "label": "label"}),
    "mrpc": GlueTask("MRPC", Columns("#1 String", "#2 String", "Quality"), labels.binary,
                     _pair("sentence1", "sentence2")),
    "qqp": GlueTask("QQP", Columns("question1", "question2", "is_duplicate"), labels.binary,
                    _pair("question1", "question2"), skip_ragged=True),
    "stsb": GlueTask("STS-B", Columns("sentence1", "sentence2", "score"), labels.stsb_score,
                     _pair("sentence1", "sentence2"), regression=True),
    "mnli": GlueTask("MNLI", Columns("sentence1", "sentence2", "gold_label"), labels.mnli_label,
                     _pair("premise", "hypothesis"), files=dict(MNLI_FILES)),
    "qnli": GlueTask("QNLI", Columns("question", "sentence", "label"), labels.rte_label,
                     _pair("question", "sentence")),
    "rte": GlueTask("RTE", Columns("sentence1", "sentence2", "label"), labels.rte_label,
                    _pair("sentence1", "sentence2")),
}


def glue_hub(name: str) -> HubSpec:
    """`nyu-mll/glue` with the task's config name; split names are the hub's own."""
    return HubSpec("nyu-mll/glue", name, GLUE[name].hub_columns)


def read_glue(name: str, split: str, root: Path | None) -> datasets.Dataset:
    """One split of GLUE task `name` (`validation_matched` etc. for MNLI)."""
    task = GLUE[name]
    if root is None:
        return load_from_hub(glue_hub(name), split, task.regression)
    path = require_file(root / task.folder / split_file(task.files, split, name), task.folder)
    return read_table(path, task.columns, task.parse_label, regression=task.regression,
                      skip_ragged=task.skip_ragged, fieldnames=task.fieldnames)


# --- CoLA's out-of-domain dev set ---------------------------------------------------------

COLA_OOD_FILE = Path("CoLA", "original", "raw", "out_of_domain_dev.tsv")
COLA_RELEASE = "https://nyu-mll.github.io/CoLA/cola_public_1.1.zip"
# Not on the model hub: without data.root it is read from CoLA's public release archive.
COLA_OOD_HUB = HubSpec(
    "csv", None, {"sentence": "text_a", "label": "label"}, splits={"test": "train"},
    options={"data_files": f"zip://cola_public/raw/out_of_domain_dev.tsv::{COLA_RELEASE}",
             "delimiter": "\t", "quoting": 3, "header": None, "column_names": COLA_FIELDS})


def read_cola_ood(split: str, root: Path | None) -> datasets.Dataset:
    """CoLA's out-of-domain dev set (516 sentences from sources not in CoLA's training data)."""
    split_file({"test": COLA_OOD_FILE.name}, split, "cola_ood")
    if root is None:
        return load_from_hub(COLA_OOD_HUB, split)
    path = require_file(root / COLA_OOD_FILE, "CoLA out-of-domain")
    return read_table(path, GLUE["cola"].columns, labels.binary, fieldnames=COLA_FIELDS)
