"""The registry of named data sets: how to read each one, its label space, its OOD split.

Each source reads one split into canonical columns `text_a`, `text_b`, `label`, from the
classic local files under `data.root` (the `glue_data/<TASK>/` layout and the OOD sets'
original release formats) or, when no root is given, from the model hub; GLUE-X's
self-collected sets only from their `save_to_disk` folders under data.root. The readers live in
glue.py, nli.py, sentiment.py and glue_x.py; adding a data set is one reader and one entry in
`SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import datasets

from emoe_cli.data import glue_x, labels
from emoe_cli.data.glue import read_cola_ood, read_glue
from emoe_cli.data.labels import LabelSpace
from emoe_cli.data.nli import (
    read_hans,
    read_paws,
    read_scitail,
    read_sick_nli,
    read_sick_relatedness,
    read_snli,
    read_wikiqa,
)
from emoe_cli.data.sentiment import (
    POLARITY_FOLDERS,
    read_amazon,
    read_imdb,
    read_polarity,
    read_yelp,
)
from emoe_cli.errors import DataError

Reader = Callable[[str, "Path | None"], datasets.Dataset]


@dataclass(frozen=True)
class Source:
    """A named data set: its reader, what its label ids mean, and where it lives.

    `ood_split` is the split read when the set serves as an OOD test set (GLUE sets use their
    dev split, as GLUE's test labels are hidden); `folder` is its directory under data.root;
    `hub` is False for a set that exists only as a local folder (GLUE-X's self-collected ones).
    """

    read: Reader
    space: LabelSpace
    ood_split: str
    folder: str
    hub: bool = True


def _self_collected(name: str, space: LabelSpace) -> Source:
    return Source(partial(glue_x.read_self_collected, name), space, "test",
                  f"{glue_x.FOLDER}/{name}", hub=False)


def _polarity(name: str) -> Source:
    return Source(partial(read_polarity, name), labels.SENTIMENT, "test", POLARITY_FOLDERS[name])


def _glue(name: str, space: LabelSpace, folder: str, ood_split: str = "validation") -> Source:
    return Source(partial(read_glue, name), space, ood_split, folder)


SOURCES: dict[str, Source] = {
    # GLUE (in-domain tasks; also OOD sets for each other)
    "cola": _glue("cola", labels.ACCEPTABILITY, "CoLA"),
    "sst2": _glue("sst2", labels.SENTIMENT, "SST-2"),
    "mrpc": _glue("mrpc", labels.PARAPHRASE, "MRPC"),
    "qqp": _glue("qqp", labels.PARAPHRASE, "QQP"),
    "stsb": _glue("stsb", labels.SIMILARITY, "STS-B"),
    "mnli": _glue("mnli", labels.NLI3, "MNLI", ood_split="validation_matched"),
    "qnli": _glue("qnli", labels.NLI2, "QNLI"),
    "rte": _glue("rte", labels.NLI2, "RTE"),
    # out-of-domain sets: GLUE-X's, which the task presets' `ood` lists name ...
    "mnli_mismatched": _glue("mnli", labels.NLI3, "MNLI", ood_split="validation_mismatched"),
    "imdb": Source(read_imdb, labels.SENTIMENT, "test", "IMDB"),
    "yelp_polarity": _polarity("yelp_polarity"),
    "amazon_polarity": _polarity("amazon_polarity"),
    "snli": Source(read_snli, labels.NLI3, "test", "SNLI"),
    "sick_nli": Source(read_sick_nli, labels.NLI3, "test", "SICK"),
    "sick_relatedness": Source(read_sick_relatedness, labels.SIMILARITY, "test", "SICK"),
    "hans": Source(read_hans, labels.NLI2, "test", "HANS"),
    "scitail": Source(read_scitail, labels.NLI2, "test", "SciTail"),
    "cola_ood": _self_collected("cola_ood", labels.ACCEPTABILITY),
    "qnli_ood": _self_collected("qnli_ood", labels.NLI2),
    "twitter": _self_collected("twitter", labels.PARAPHRASE),
    "flipkart": _self_collected("flipkart", labels.SENTIMENT),
    # ... and extras (`task.ood_extra`): other shifts for the same tasks
    "cola_ood_dev": Source(read_cola_ood, labels.ACCEPTABILITY, "test", "CoLA"),
    "yelp": Source(read_yelp, labels.SENTIMENT, "test", "yelp"),
    "amazon": Source(read_amazon, labels.SENTIMENT, "test", "amazon_multidomain"),
    "wikiqa": Source(read_wikiqa, labels.NLI2, "test", "WikiQA"),
    "paws": Source(read_paws, labels.PARAPHRASE, "test", "PAWS"),
}


def check_root(root: str | Path | None) -> Path | None:
    """`root` as a Path (None stays None: the hub), or a DataError if it is not a directory."""
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data.root={str(path)!r} is not a directory (expected a "
                        "glue_data-style folder such as ../shared/data)")
    return path


def load_source(name: str, split: str, root: str | Path | None) -> datasets.Dataset:
    """One split of data set `name`, from `root` if given, else from the hub."""
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}; valid: {', '.join(sorted(SOURCES))}")
    return SOURCES[name].read(split, check_root(root))
