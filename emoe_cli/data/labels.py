"""Label spaces and the explicit label mappings between data sets.

Every reader returns label ids in the id order of the Hugging Face hub copy of its data set
(`nyu-mll/glue` for GLUE), so a model trained from local files and one trained from the hub
agree. An OOD set whose label space differs from its task's is scored through a `Bridge`:
either its gold labels are mapped into the task's space, or the model's predictions are mapped
into the set's space. Only the bridges listed in `BRIDGES` exist; anything else is a user error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelSpace:
    """The classes a data set's label ids stand for, in id order (none: regression)."""

    name: str
    labels: tuple[str, ...]

    @property
    def regression(self) -> bool:
        return not self.labels

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    def describe(self) -> str:
        return "a regression score" if self.regression else ", ".join(self.labels)


SENTIMENT = LabelSpace("sentiment", ("negative", "positive"))
ACCEPTABILITY = LabelSpace("acceptability", ("unacceptable", "acceptable"))
PARAPHRASE = LabelSpace("paraphrase", ("not_paraphrase", "paraphrase"))
SIMILARITY = LabelSpace("similarity", ())  # STS-B's 0-5 scale
NLI3 = LabelSpace("nli3", ("entailment", "neutral", "contradiction"))
NLI2 = LabelSpace("nli2", ("entailment", "not_entailment"))

ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2
NOT_ENTAILMENT = 1


# --- parsers for label text in files: each raises ValueError naming the valid values -----------

def words(mapping: Mapping[str, int]) -> Callable[[str | None], int]:
    """A parser for labels written as words (or digits), e.g. RTE's `not_entailment`."""
    valid = ", ".join(mapping)

    def parse(value: str | None) -> int:
        key = (value or "").strip()
        if key not in mapping:
            raise ValueError(f"is {value!r}; valid: {valid}")
        return mapping[key]

    return parse


binary = words({"0": 0, "1": 1})
rte_label = words({"entailment": ENTAILMENT, "not_entailment": NOT_ENTAILMENT})
mnli_label = words({"entailment": ENTAILMENT, "neutral": NEUTRAL,
                    "contradiction": CONTRADICTION})
sick_entailment_label = words({"ENTAILMENT": ENTAILMENT, "NEUTRAL": NEUTRAL,
                               "CONTRADICTION": CONTRADICTION})
hans_label = words({"entailment": ENTAILMENT, "non-entailment": NOT_ENTAILMENT})
scitail_label = words({"entails": ENTAILMENT, "neutral": NOT_ENTAILMENT})
# GLUE-X's self-collected sets: ids as saved, or the label words GLUE-X's own loader maps
# (evaluation/utils_lp.py:417-453: qnli_ood's entailment / not_entailment; flipkart's three
# sentiments, neutral counted as negative).
qnli_ood_label = words({"0": ENTAILMENT, "1": NOT_ENTAILMENT, "entailment": ENTAILMENT,
                        "not_entailment": NOT_ENTAILMENT})
flipkart_label = words({"0": 0, "1": 1, "negative": 0, "neutral": 0, "positive": 1})


def snli_label(value: str | int | None) -> int | None:
    """SNLI ids as they are (0 entailment, 1 neutral, 2 contradiction); -1 (no gold) dropped."""
    text = str(value).strip() if value is not None else ""
    if text == "-1":
        return None
    if text not in ("0", "1", "2"):
        raise ValueError(f"is {value!r}; valid: 0, 1, 2, or -1 for no gold label")
    return int(text)


def score_in(low: float, high: float) -> Callable[[str | float | None], float]:
    """A parser for a real-valued score that must lie in [low, high]."""

    def parse(value: str | float | None) -> float:
        try:
            score = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"is {value!r}; valid: a number in [{low:g}, {high:g}]") from None
        if not low <= score <= high:  # nan fails both comparisons, so it is refused too
            raise ValueError(f"is {score:g}; valid: a number in [{low:g}, {high:g}]")
        return score

    return parse


stsb_score = score_in(0.0, 5.0)
_sick_relatedness = score_in(1.0, 5.0)


def sick_relatedness_to_stsb(value: str | float | None) -> float:
    """SICK relatedness (1-5) rescaled linearly onto STS-B's 0-5 scale: (s - 1) * 5 / 4."""
    return (_sick_relatedness(value) - 1.0) * 5.0 / 4.0


def stars_to_polarity(stars: float) -> int | None:
    """1-2 stars negative, 4-5 positive, 3 dropped (None), as in GLUE-X."""
    return 0 if stars <= 2 else 1 if stars >= 4 else None


def answer_to_nli2(value: str | int | None) -> int:
    """Answer selection (1 = the sentence answers the question) as QNLI ids (0 = entailment)."""
    answers = binary(str(value) if value is not None else None)
    return ENTAILMENT if answers == 1 else NOT_ENTAILMENT


# --- bridges between label spaces --------------------------------------------------------------

def nli3_to_nli2(label: int) -> int:
    """Entailment stays entailment; neutral and contradiction both become not_entailment."""
    if label not in (ENTAILMENT, NEUTRAL, CONTRADICTION):
        raise ValueError(f"3-way NLI label {label!r}; valid: 0, 1, 2")
    return ENTAILMENT if label == ENTAILMENT else NOT_ENTAILMENT


def collapse_nli_predictions(predictions: np.ndarray) -> np.ndarray:
    """A 3-way model's predictions read as 2-way: neutral and contradiction are non-entailment."""
    return np.where(np.asarray(predictions) == ENTAILMENT, ENTAILMENT, NOT_ENTAILMENT)


def entailment_as_paraphrase(label: int) -> int:
    """GLUE-X's bridge between NLI and paraphrase sets (its evaluation/utils_lp.py:388-416
    flips the id): entailment (0) is paraphrase (1) and back; it is its own inverse."""
    if label not in (0, 1):
        raise ValueError(f"2-way label {label!r}; valid: 0, 1")
    return 1 - label


@dataclass(frozen=True)
class Bridge:
    """How a task scores an OOD set labelled in another space: map gold labels or predictions."""

    gold: Callable[[int], int] | None = None
    predictions: Callable[[np.ndarray], np.ndarray] | None = None


# (task's label space, OOD set's label space) -> bridge
BRIDGES: dict[tuple[str, str], Bridge] = {
    (NLI2.name, NLI3.name): Bridge(gold=nli3_to_nli2),  # e.g. RTE scored on SNLI / SICK
    (NLI3.name, NLI2.name): Bridge(predictions=collapse_nli_predictions),  # MNLI scored on HANS
    (NLI2.name, PARAPHRASE.name): Bridge(gold=entailment_as_paraphrase),  # RTE on MRPC / QQP
    (PARAPHRASE.name, NLI2.name): Bridge(gold=entailment_as_paraphrase),  # MRPC on RTE / HANS
}


def bridge(task_space: LabelSpace, ood_space: LabelSpace) -> Bridge | None:
    """The bridge from `ood_space` to `task_space`: empty if they match, None if there is none."""
    if task_space == ood_space:
        return Bridge()
    return BRIDGES.get((task_space.name, ood_space.name))
