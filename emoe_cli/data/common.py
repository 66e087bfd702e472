"""Plumbing shared by the readers: canonical rows, table files with file:line errors, the hub.

Every reader returns a `datasets.Dataset` with exactly the columns `text_a`, `text_b` (None for
single-sentence data) and `label` (an int id, or a float for regression).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import datasets

from emoe_cli.errors import DataError, UserError

log = logging.getLogger("emoe")

CANONICAL = ("text_a", "text_b", "label")
LabelParser = Callable[[Any], "int | float | None"]  # None: drop the row; ValueError: malformed
# The most characters one CSV/TSV field may hold. The csv module's default (131,072) stops a
# long document with a traceback; 16 Mi characters lets any real text through while an
# unclosed quote that swallows the rest of a large file still ends in a clear error.
FIELD_LIMIT = 16 * 2**20


def open_fraction(value, key: str) -> float:
    """`value` as a share strictly between 0 and 1 (a part carved from a split), or a
    UserError naming the config `key`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise UserError(f"{key}={value!r} is invalid; valid: a number in (0, 1)")
    return float(value)


class Columns(NamedTuple):
    """Which source columns hold the first text, the optional second text and the label."""

    text_a: str
    text_b: str | None
    label: str


def features(regression: bool) -> datasets.Features:
    """The canonical schema; labels are float32 for regression, int64 for classes."""
    return datasets.Features({
        "text_a": datasets.Value("string"),
        "text_b": datasets.Value("string"),
        "label": datasets.Value("float32" if regression else "int64"),
    })


def require_file(path: Path, what: str) -> Path:
    """`path`, or a DataError naming the missing file."""
    if not path.is_file():
        raise DataError(f"data.root: missing {what} file {path}")
    return path


def split_file(files: Mapping[str, str], split: str, name: str) -> str:
    """The file name of `split`, or a DataError listing the splits that exist locally."""
    if split not in files:
        raise DataError(f"{name}: no split {split!r} in the local files; valid: "
                        f"{', '.join(files)}")
    return files[split]


def to_dataset(rows: list[dict], source: str, regression: bool = False) -> datasets.Dataset:
    """Canonical rows as a Dataset; an empty result is an error naming the source."""
    if not rows:
        raise DataError(f"{source}: no usable rows")
    for row in rows:
        row.setdefault("text_b", None)
    return datasets.Dataset.from_list(rows, features=features(regression))


BAD_ROW_POLICIES = ("error", "skip")


@dataclass
class BadRows:
    """`error`: the first malformed row stops the run (file:line); `skip`: count and go on."""

    policy: str = "error"
    skipped: dict[str, int] = field(default_factory=dict)   # source file -> rows skipped
    first: dict[str, str] = field(default_factory=dict)     # source file -> first bad row


_bad_rows: ContextVar[BadRows | None] = ContextVar("bad_rows", default=None)


@contextmanager
def bad_rows_policy(policy: str) -> Iterator[BadRows]:
    """Apply `policy` to every table read inside the block; yields the skip counts."""
    if policy not in BAD_ROW_POLICIES:
        raise UserError(f"task.bad_rows={policy!r} is invalid; valid: "
                        f"{', '.join(BAD_ROW_POLICIES)}")
    tally = BadRows(policy)
    token = _bad_rows.set(tally)
    try:
        yield tally
    finally:
        _bad_rows.reset(token)


def guarded_row(record: Mapping[str, Any], columns: Columns, parse_label: LabelParser,
                where: str, source: str) -> dict | None:
    """`canonical_row`, except that under the `skip` policy a malformed row is counted."""
    try:
        return canonical_row(record, columns, parse_label, where)
    except DataError as error:
        skip_bad_row(error, source)
        return None


def skip_bad_row(error: DataError, source: str) -> None:
    """Count a malformed row of `source` under the `skip` policy; re-raise it otherwise."""
    tally = _bad_rows.get()
    if tally is None or tally.policy == "error":
        raise error
    tally.skipped[source] = tally.skipped.get(source, 0) + 1
    tally.first.setdefault(source, str(error))


def report_skipped(source: str) -> None:
    tally = _bad_rows.get()
    if tally is not None and tally.skipped.get(source):
        log.warning("%s: skipped %d malformed rows (task.bad_rows=skip); first: %s", source,
                    tally.skipped[source], tally.first[source])


def canonical_row(record: Mapping[str, Any], columns: Columns, parse_label: LabelParser,
                  where: str) -> dict | None:
    """One record as a canonical row (None if its label says to drop it); `where` names it."""
    if None in record:  # csv.DictReader files the fields beyond the header under None
        expected = len(record) - 1
        raise DataError(f"{where}: {expected + len(record[None])} fields, expected {expected} "
                        "(a delimiter inside a text?); valid: one field per column")
    absent = [c for c in columns if c is not None and c not in record]
    if absent:
        raise DataError(f"{where}: no column {absent[0]!r}; columns: "
                        f"{', '.join(str(key) for key in record if key is not None)}")
    row: dict[str, Any] = {}
    for key, column in (("text_a", columns.text_a), ("text_b", columns.text_b)):
        if column is None:
            row[key] = None
            continue
        value = record.get(column)
        if value is None or not str(value).strip():
            raise DataError(f"{where}: empty or missing column {column!r}")
        row[key] = str(value).strip()
    try:
        row["label"] = parse_label(record.get(columns.label))
    except (TypeError, ValueError) as error:
        raise DataError(f"{where}: column {columns.label!r} {error}") from None
    return None if row["label"] is None else row


def table_records(path: Path, *, delimiter: str = "\t", fieldnames: list[str] | None = None,
                  quoted: bool = False) -> Iterator[tuple[str, dict]]:
    """(`file:line`, record) for each row of a delimited file with a header (or `fieldnames`).

    GLUE's TSV files are read without quote processing (their texts contain stray quotes);
    `quoted` turns standard CSV quoting on. A byte-order mark before the header is ignored.
    """
    quoting = csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    csv.field_size_limit(FIELD_LIMIT)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, fieldnames=fieldnames, delimiter=delimiter,
                                quoting=quoting)
        try:
            for record in reader:
                yield f"{path}:{reader.line_num}", record
        except UnicodeDecodeError:
            raise not_utf8(path) from None
        except csv.Error as error:  # line_num counts the lines of the rows read before
            raise table_error(f"{path}:{reader.line_num + 1}", error) from None


def table_error(where: str, error: csv.Error) -> DataError:
    """A csv module failure as a DataError naming the row where it happened."""
    if "field limit" in str(error):
        return DataError(f"{where}: a field longer than {FIELD_LIMIT:,} characters (an unclosed "
                         "quote?); valid: shorter texts, quotes closed")
    return DataError(f"{where}: not readable as a delimited file ({error})")


def not_utf8(path: Path) -> DataError:
    """The error for a file that does not decode as UTF-8, naming the line of its first bad byte."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return DataError(f"{path}:{line}: byte 0x{data[error.start]:02x} is not UTF-8; data "
                         "files must be UTF-8 text: convert or re-save it as UTF-8")
    return DataError(f"{path}: not UTF-8 text; data files must be UTF-8 text")


def is_ragged(record: Mapping) -> bool:
    """True for a row with more or fewer fields than the header."""
    return None in record or any(value is None for value in record.values())


def read_table(path: Path, columns: Columns, parse_label: LabelParser, *,
               regression: bool = False, skip_ragged: bool = False,
               keep: Callable[[dict], bool] | None = None, **table_options) -> datasets.Dataset:
    """A delimited file as a canonical Dataset; malformed rows raise DataError with file:line.

    `skip_ragged` skips rows whose field count is wrong (GLUE's own readers skip the few such
    rows in QQP's train.tsv) and logs how many; `keep` selects records (e.g. a SICK split).
    """
    rows, ragged = [], []
    for where, record in table_records(path, **table_options):
        if skip_ragged and is_ragged(record):
            ragged.append(where)
            continue
        if keep is not None and not keep(record):
            continue
        row = guarded_row(record, columns, parse_label, where, str(path))
        if row is not None:
            rows.append(row)
    report_skipped(str(path))
    if ragged:
        log.warning("%s: skipped %d rows with the wrong number of fields (first: %s)", path,
                    len(ragged), ragged[0])
    return to_dataset(rows, str(path), regression)


# --- the model hub ---------------------------------------------------------------------------

@dataclass(frozen=True)
class HubSpec:
    """Where a data set lives on the hub and how its columns become the canonical ones.

    `columns` maps hub column -> canonical column (text_a, text_b, label); `splits` maps our
    split names to the hub's where they differ; `label_map` turns a hub label into our id
    (None drops the row); `options` are extra `load_dataset` arguments (e.g. a revision).
    """

    path: str
    config: str | None
    columns: dict[str, str]
    splits: dict[str, str] = field(default_factory=dict)
    label_map: Callable[[Any], Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def title(self) -> str:
        return self.path + (f"/{self.config}" if self.config else "")


def fetch(spec: HubSpec, split: str) -> datasets.Dataset:
    """One split of a hub data set, or a DataError naming it and suggesting a local copy."""
    try:
        return datasets.load_dataset(spec.path, spec.config, split=split, **spec.options)
    except Exception as error:  # the hub raises many types; the user needs the name and split
        raise DataError(
            f"could not load {spec.title()} split {split!r} from the hub "
            f"({type(error).__name__}); set data.root to a local copy"
        ) from error


def load_from_hub(spec: HubSpec, split: str, regression: bool = False) -> datasets.Dataset:
    """One split from the hub in canonical columns, label ids mapped and unlabelled rows dropped."""
    hub_split = spec.splits.get(split, split)
    data = fetch(spec, hub_split)
    missing = [column for column in spec.columns if column not in data.column_names]
    if missing:
        raise DataError(f"{spec.title()} split {hub_split!r} has no column {missing[0]!r}; "
                        f"columns: {', '.join(data.column_names)}")
    data = data.select_columns(list(spec.columns))
    data = data.rename_columns({src: dst for src, dst in spec.columns.items() if src != dst})
    if "text_b" not in data.column_names:
        data = data.add_column("text_b", [None] * len(data))
    data = data.select_columns(list(CANONICAL))
    data = _map_labels(data, spec.label_map, regression)
    if len(data) == 0:
        raise DataError(f"{spec.title()} split {hub_split!r} has no labelled rows")
    return data


def _map_labels(data: datasets.Dataset, label_map: Callable | None,
                regression: bool) -> datasets.Dataset:
    """Apply `label_map` (if any), cast to the canonical schema, drop rows without a label."""
    if label_map is None:
        data = data.cast(features(regression))
    else:
        data = data.map(lambda batch: {"label": [label_map(v) for v in batch["label"]]},
                        batched=True, features=features(regression))

    def labelled(batch):
        return [v is not None and v >= 0 for v in batch["label"]]  # -1: unlabelled (GLUE test)

    return data.filter(labelled, batched=True)
