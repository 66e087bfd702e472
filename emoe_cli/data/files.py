"""Bring-your-own data: a task whose splits are local CSV / TSV / JSON / JSONL files.

A task config with `source: file` names its files per split (`files: {train: ..., validation:
...}`), which columns hold the texts and the label (`columns: {text_a: ..., text_b: ...,
label: ...}`) and, optionally, how raw labels become ids (`label_map: {raw: id}`, `null` drops
the row). Without a label_map, labels must already be ids 0..num_labels-1 (or numbers when
num_labels is 1, regression). See conf/task/custom_example.yaml.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets

from emoe_cli.data.common import (
    Columns,
    LabelParser,
    guarded_row,
    not_utf8,
    report_skipped,
    table_records,
    to_dataset,
)
from emoe_cli.errors import DataError, UserError

FILE_SOURCE = "file"
DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_SUFFIXES = (".json", ".jsonl")
SUFFIXES = (*DELIMITERS, *JSON_SUFFIXES)


def is_file_task(task) -> bool:
    return task.source == FILE_SOURCE


def check_file_task(task) -> None:
    """Fail early, naming the key, if a `source: file` task's config cannot work."""
    files = task.get("files") or {}
    for key in ("train_split", "eval_split"):
        if task[key] not in files:
            raise UserError(f"task.{key}={task[key]!r} has no entry in task.files; valid: "
                            f"{', '.join(files) or 'add task.files.' + task[key]}")
    for split, path in files.items():
        if Path(str(path)).suffix.lower() not in SUFFIXES:
            raise UserError(f"task.files.{split}={path!r}: unknown file type; valid endings: "
                            f"{', '.join(SUFFIXES)}")
    columns = task.get("columns") or {}
    for key in ("text_a", "label"):
        if not columns.get(key):
            raise UserError(f"task.columns.{key} is missing: name the file column that holds "
                            f"the {'first text' if key == 'text_a' else 'label'}")
    for raw, label in (task.get("label_map") or {}).items():
        if label is not None and not _valid_id(label, task.num_labels):
            raise UserError(f"task.label_map[{raw!r}]={label!r} is invalid; valid: an id in "
                            f"0..{task.num_labels - 1} or null to drop the row")


def _valid_id(label: Any, num_labels: int) -> bool:
    if num_labels == 1:
        return (isinstance(label, float) and math.isfinite(label)
                or isinstance(label, int) and not isinstance(label, bool))
    return isinstance(label, int) and not isinstance(label, bool) and 0 <= label < num_labels


def read_task_file(task, split: str) -> datasets.Dataset:
    """The file that `task.files[split]` names, in canonical columns."""
    path = Path(str(task.files[split])).expanduser()
    if not path.is_file():
        raise DataError(f"task.files.{split}: missing file {path}")
    columns = Columns(task.columns.text_a, task.columns.get("text_b"), task.columns.label)
    parse = label_parser(task.get("label_map"), task.num_labels)
    rows = []
    for where, record in records(path):
        row = guarded_row(record, columns, parse, where, str(path))
        if row is not None:
            rows.append(row)
    report_skipped(str(path))
    return to_dataset(rows, str(path), regression=task.num_labels == 1)


def records(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(`file:line` or `file: record N`, record) for every record of a CSV/TSV/JSON/JSONL file."""
    suffix = path.suffix.lower()
    if suffix in DELIMITERS:
        yield from table_records(path, delimiter=DELIMITERS[suffix], quoted=True)
        return
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    if text.lstrip().startswith("["):  # a JSON array of objects
        for number, record in enumerate(_parse_json(text, str(path)), start=1):
            yield f"{path}: record {number}", _as_mapping(record, f"{path}: record {number}")
        return
    for number, line in enumerate(text.splitlines(), start=1):  # JSON lines
        if line.strip():
            where = f"{path}:{number}"
            yield where, _as_mapping(_parse_json(line, where), where)


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error.msg})") from None


def _as_mapping(record: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: expected a JSON object with the task.columns as keys")
    return record


def label_parser(label_map: Mapping | None, num_labels: int) -> LabelParser:
    """How a raw label becomes an id: through `label_map` (keys compared as text), or as is."""
    if label_map:
        table = {str(raw): label for raw, label in label_map.items()}
        valid = ", ".join(table)

        def mapped(value: Any) -> int | float | None:
            key = _as_text(value)
            if key not in table:
                raise ValueError(f"is {value!r}, not a key of task.label_map; valid: {valid}")
            return table[key]

        return mapped
    return _number if num_labels == 1 else _class_id(num_labels)


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # JSON 4.0 matches a label_map key 4
    return str(value).strip() if value is not None else ""


def _number(value: Any) -> float:
    """A regression label; nan and inf are refused, as one would poison the loss or the score."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"is {value!r}; valid: a finite number (num_labels is 1: regression)")
    return number


def _class_id(num_labels: int) -> LabelParser:
    def parse(value: Any) -> int:
        text = _as_text(value)
        if not text.isdigit() or int(text) >= num_labels:
            raise ValueError(f"is {value!r}; valid: 0..{num_labels - 1}, or add a task.label_map")
        return int(text)

    return parse
