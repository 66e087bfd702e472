"""Sentiment OOD sets for SST-2: IMDB, Yelp and Amazon reviews as polarity (1 positive).

GLUE-X's sets are IMDB, yelp_polarity and amazon_polarity (Zhang et al.'s review polarity
sets, read from the hub or their original `*_review_polarity_csv/test.csv`); `yelp` (a star-rated
Yelp sample) and `amazon` (the multi-domain reviews) are local extras.
"""

from __future__ import annotations

import csv
import re
import tarfile
from pathlib import Path

import datasets

from emoe_cli.data import labels
from emoe_cli.data.common import (
    FIELD_LIMIT,
    HubSpec,
    load_from_hub,
    report_skipped,
    require_file,
    skip_bad_row,
    split_file,
    table_records,
    to_dataset,
)
from emoe_cli.errors import DataError

ONLY_TEST = {"test": "test"}
IMDB_HUB = HubSpec("stanfordnlp/imdb", None, {"text": "text_a", "label": "label"})
YELP_HUB = HubSpec("fancyzhx/yelp_polarity", None, {"text": "text_a", "label": "label"})
AMAZON_HUB = HubSpec("fancyzhx/amazon_polarity", None, {"content": "text_a", "label": "label"})

POLARITY_FOLDERS = {"yelp_polarity": "yelp_review_polarity_csv",
                    "amazon_polarity": "amazon_review_polarity_csv"}
POLARITY_HUBS = {"yelp_polarity": YELP_HUB, "amazon_polarity": AMAZON_HUB}

_IMDB_MEMBER = re.compile(r"aclImdb/test/(pos|neg)/\d+_\d+\.txt$")


def read_imdb(split: str, root: Path | None) -> datasets.Dataset:
    """IMDB movie reviews (test split), read from the original aclImdb archive."""
    if root is None:
        return load_from_hub(IMDB_HUB, split)
    split_file(ONLY_TEST, split, "imdb")
    path = require_file(root / "IMDB" / "aclImdb_test.tar.gz", "IMDB")
    rows = []
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            match = _IMDB_MEMBER.search(member.name)
            if match:
                raw = archive.extractfile(member).read()
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path}: {member.name} is not UTF-8 text; the IMDB "
                                    "archive must hold UTF-8 reviews") from None
                rows.append({"text_a": text.replace("<br />", " "),
                             "label": int(match.group(1) == "pos")})
    rows.sort(key=lambda row: (row["label"], row["text_a"]))  # archive order is not stable
    return to_dataset(rows, str(path))


def read_yelp(split: str, root: Path | None) -> datasets.Dataset:
    """Yelp reviews as polarity (1-2 stars negative, 4-5 positive, 3 dropped)."""
    if root is None:
        return load_from_hub(YELP_HUB, split)
    split_file(ONLY_TEST, split, "yelp")
    path = require_file(root / "yelp" / "test.csv", "Yelp")
    rows = []
    for where, row in table_records(path, delimiter=",", quoted=True):
        match = re.search(r"([\d.]+)", row.get("label2") or "")
        if not match or not row.get("text"):
            raise DataError(f"{where}: expected columns text,label1,label2 "
                            f"with label2 like 'Review Stars: 4.0'")
        label = labels.stars_to_polarity(float(match.group(1)))
        if label is not None:
            rows.append({"text_a": row["text"].strip(), "label": label})
    return to_dataset(rows, str(path))


_AMAZON_TEXT = re.compile(r"<review_text>\s*(.*?)\s*</review_text>", re.S)


def read_amazon(split: str, root: Path | None) -> datasets.Dataset:
    """Amazon product reviews (multi-domain: books, dvd, electronics, kitchen) as polarity."""
    if root is None:
        return load_from_hub(AMAZON_HUB, split)
    split_file(ONLY_TEST, split, "amazon")
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
    return to_dataset(rows, str(base))


def read_polarity(name: str, split: str, root: Path | None) -> datasets.Dataset:
    """yelp_polarity / amazon_polarity: the hub copy, or the original release's test.csv
    (no header; class 1 negative, 2 positive; then the text, or amazon's title and content)."""
    if root is None:
        return load_from_hub(POLARITY_HUBS[name], split)
    split_file(ONLY_TEST, split, name)
    path = require_file(root / POLARITY_FOLDERS[name] / "test.csv", name)
    rows = []
    csv.field_size_limit(FIELD_LIMIT)
    with path.open(encoding="utf-8", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle), start=1):
            if len(fields) not in (2, 3) or fields[0] not in ("1", "2") or not fields[-1].strip():
                skip_bad_row(DataError(f"{path}: record {number}: expected \"class\","
                                       "[\"title\",]\"text\" with class 1 (negative) or 2 "
                                       "(positive)"), str(path))
                continue
            text = fields[-1].replace("\\n", " ").replace('\\"', '"')  # the release's escapes
            rows.append({"text_a": " ".join(text.split()), "label": int(fields[0]) - 1})
    report_skipped(str(path))
    return to_dataset(rows, str(path))
