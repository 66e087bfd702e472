"""Read one split of one data set into canonical columns: `text_a`, `text_b`, `label`.

Each source reads the classic local files under `data.root` (the `glue_data/<TASK>/`
layout and the OOD sets' original formats) or, when no root is given, the model hub.
Adding a data set is one function and one entry in `SOURCES`.
"""

from __future__ import annotations

import csv
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import datasets

from emoe_cli.errors import DataError

CANONICAL = ("text_a", "text_b", "label")


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"data.root: missing {what} file {path}")
    return path


def _from_rows(rows: list[dict], source: str) -> datasets.Dataset:
    if not rows:
        raise DataError(f"{source}: no usable rows")
    for row in rows:
        row.setdefault("text_b", None)
    return datasets.Dataset.from_list(rows)


def _hub(path: str, name: str | None, split: str, columns: dict[str, str],
         label_map: Callable[[int], int] | None = None) -> datasets.Dataset:
    """Load a hub data set and rename its columns to the canonical ones."""
    try:
        data = datasets.load_dataset(path, name, split=split)
    except Exception as error:  # the hub raises many types; the user needs the name and split
        raise DataError(
            f"could not load {path}{'/' + name if name else ''} split {split!r} from the hub "
            f"({type(error).__name__}); set data.root to a local copy"
        ) from error
    data = data.rename_columns({src: dst for src, dst in columns.items() if src != dst})
    if label_map is not None:
        data = data.map(lambda row: {"label": label_map(row["label"])})
        data = data.filter(lambda row: row["label"] >= 0)
    if "text_b" not in data.column_names:
        data = data.add_column("text_b", [None] * len(data))
    return data.select_columns(list(CANONICAL))


# --- GLUE -----------------------------------------------------------------------------

GLUE_DIRS = {"sst2": "SST-2"}
GLUE_FILES = {"train": "train.tsv", "validation": "dev.tsv"}


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def sst2(split: str, root: Path | None) -> datasets.Dataset:
    """SST-2 sentences with 0 = negative, 1 = positive."""
    if root is None:
        return _hub("nyu-mll/glue", "sst2", split, {"sentence": "text_a"})
    path = _require(root / GLUE_DIRS["sst2"] / GLUE_FILES[split], "SST-2")
    rows = []
    for line, row in enumerate(_read_tsv(path), start=2):
        if row.get("label") not in ("0", "1") or not row.get("sentence"):
            raise DataError(f"{path}:{line}: expected 'sentence<TAB>label' with label 0 or 1")
        rows.append({"text_a": row["sentence"].strip(), "label": int(row["label"])})
    return _from_rows(rows, str(path))


# --- OOD sets for sentiment -----------------------------------------------------------

_IMDB_MEMBER = re.compile(r"aclImdb/test/(pos|neg)/\d+_\d+\.txt$")


def imdb(split: str, root: Path | None) -> datasets.Dataset:
    """IMDB movie reviews (test split), read from the original aclImdb archive."""
    if root is None:
        return _hub("stanfordnlp/imdb", None, "test", {"text": "text_a"})
    path = _require(root / "IMDB" / "aclImdb_test.tar.gz", "IMDB")
    rows = []
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            match = _IMDB_MEMBER.search(member.name)
            if match:
                text = archive.extractfile(member).read().decode("utf-8")
                rows.append({"text_a": text.replace("<br />", " "),
                             "label": int(match.group(1) == "pos")})
    rows.sort(key=lambda row: (row["label"], row["text_a"]))  # archive order is not stable
    return _from_rows(rows, str(path))


def _stars_to_polarity(stars: float) -> int:
    """1-2 stars negative, 4-5 positive, 3 dropped (-1), as in GLUE-X."""
    return 0 if stars <= 2 else 1 if stars >= 4 else -1


def yelp(split: str, root: Path | None) -> datasets.Dataset:
    """Yelp reviews as polarity."""
    if root is None:
        return _hub("fancyzhx/yelp_polarity", None, "test", {"text": "text_a"})
    path = _require(root / "yelp" / "test.csv", "Yelp")
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            match = re.search(r"([\d.]+)", row.get("label2") or "")
            if not match or not row.get("text"):
                raise DataError(f"{path}:{line}: expected columns text,label1,label2 "
                                f"with label2 like 'Review Stars: 4.0'")
            label = _stars_to_polarity(float(match.group(1)))
            if label >= 0:
                rows.append({"text_a": row["text"].strip(), "label": label})
    return _from_rows(rows, str(path))


_AMAZON_TEXT = re.compile(r"<review_text>\s*(.*?)\s*</review_text>", re.S)


def amazon(split: str, root: Path | None) -> datasets.Dataset:
    """Amazon product reviews (multi-domain: books, dvd, electronics, kitchen) as polarity."""
    if root is None:
        return _hub("fancyzhx/amazon_polarity", None, "test", {"content": "text_a"})
    base = root / "amazon_multidomain"
    files = sorted(base.glob("*/*.review"))
    if not files:
        raise DataError(f"data.root: missing Amazon files {base}/<domain>/{{positive,negative}}"
                        ".review")
    rows = []
    for path in files:
        if path.stem not in ("positive", "negative"):
            continue
        label = int(path.stem == "positive")
        for text in _AMAZON_TEXT.findall(path.read_text(encoding="latin-1")):
            rows.append({"text_a": " ".join(text.split()), "label": label})
    return _from_rows(rows, str(base))


SOURCES: dict[str, Callable[[str, Path | None], datasets.Dataset]] = {
    "sst2": sst2,
    "imdb": imdb,
    "yelp": yelp,
    "amazon": amazon,
}


def load_source(name: str, split: str, root: str | Path | None) -> datasets.Dataset:
    """One split of data set `name`, from `root` if given, else from the hub."""
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}; valid: {', '.join(sorted(SOURCES))}")
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"data.root={str(root)!r} is not a directory (expected a "
                            "glue_data-style folder such as ../shared/data)")
    return SOURCES[name](split, root)
