"""GLUE-X's self-collected OOD sets: `cola_ood`, `qnli_ood`, `twitter` and `flipkart`.

GLUE-X shares them only as a download folder, and the official EMoE test script
(Language/test_glue_no_trainer.py) reads each with `datasets.load_from_disk` from
`datasets_self_collected/<name>`, taking the text columns of its `task_to_keys`. We read the
same folders under `data.root`. With no hub copy to fall back on, an absent folder raises
`MissingData`, which lets a run skip the set (`data.ood_missing=skip`) instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets

from emoe_cli.data import labels
from emoe_cli.data.common import (
    Columns,
    LabelParser,
    guarded_row,
    report_skipped,
    split_file,
    to_dataset,
)
from emoe_cli.errors import DataError, MissingData

FOLDER = "datasets_self_collected"  # under data.root, as in the official script


@dataclass(frozen=True)
class SelfCollected:
    """Which saved columns hold the texts and the label, and how a saved label becomes an id."""

    columns: Columns
    parse_label: LabelParser


# Columns: the official script's task_to_keys (test_glue_no_trainer.py:72-93), label "label".
SETS: dict[str, SelfCollected] = {
    "cola_ood": SelfCollected(Columns("sentence", None, "label"), labels.binary),
    "qnli_ood": SelfCollected(Columns("question", "sentence", "label"), labels.qnli_ood_label),
    "twitter": SelfCollected(Columns("sentence1", "sentence2", "label"), labels.binary),
    "flipkart": SelfCollected(Columns("sentence", None, "label"), labels.flipkart_label),
}


def layout(name: str) -> str:
    """The folder format a set needs, for error messages."""
    columns = ", ".join(c for c in SETS[name].columns if c is not None)
    return (f"a datasets.save_to_disk folder (dataset_info.json, state.json, data-*.arrow) "
            f"with columns {columns}")


def folder(name: str, root: Path | None) -> str:
    base = "<data.root>" if root is None else str(root)
    return f"{base}/{FOLDER}/{name}"


def read_self_collected(name: str, split: str, root: Path | None) -> datasets.Dataset:
    """GLUE-X's saved set `name` in canonical columns (it has one split, read as `test`)."""
    split_file({"test": FOLDER}, split, name)
    where = f"task.ood: GLUE-X's {name!r} needs {folder(name, root)}"
    if root is None:
        raise MissingData(f"{where}, but data.root is not set; expected {layout(name)}")
    path = root / FOLDER / name
    if not path.is_dir():
        raise MissingData(f"{where}, which does not exist; expected {layout(name)}")
    try:
        data = datasets.load_from_disk(str(path))
    except Exception as error:  # load_from_disk raises several types for a wrong folder
        raise DataError(f"{path}: not readable by datasets.load_from_disk "
                        f"({type(error).__name__}); expected {layout(name)}") from None
    return _canonical(_one_split(data, path), SETS[name], path)


def _one_split(data, path: Path) -> datasets.Dataset:
    """The saved Dataset; a DatasetDict is accepted if it has a `test` split or only one."""
    if isinstance(data, datasets.Dataset):
        return data
    if "test" in data:
        return data["test"]
    if len(data) == 1:
        return next(iter(data.values()))
    raise DataError(f"{path}: a DatasetDict with splits {', '.join(data)}; valid: one Dataset, "
                    "or a DatasetDict with a `test` split")


def _canonical(data: datasets.Dataset, spec: SelfCollected, path: Path) -> datasets.Dataset:
    """Every saved row as a canonical row; a malformed one is an error naming its index."""
    names = _label_names(data.features.get(spec.columns.label), spec.parse_label)
    rows = []
    for index, record in enumerate(data):
        value = record.get(spec.columns.label)
        record[spec.columns.label] = _label_text(value if names is None or value is None
                                                 or value < 0 else names[value])
        row = guarded_row(record, spec.columns, spec.parse_label, f"{path}: row {index}",
                          str(path))
        if row is not None:
            rows.append(row)
    report_skipped(str(path))
    return to_dataset(rows, str(path))


def _label_names(feature, parse: LabelParser) -> list[str] | None:
    """A ClassLabel's names when the parser knows them all (so ids in another order still map
    right); None to read the saved ids as they are."""
    if not isinstance(feature, datasets.ClassLabel):
        return None
    try:
        for name in feature.names:
            parse(name)
    except ValueError:
        return None
    return list(feature.names)


def _label_text(value) -> str | None:
    """A saved label as the text the parsers read: 1, 1.0 and "1" all become "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None if value is None else str(value)
