"""The label mappings, worked by hand."""

import numpy as np
import pytest

from emoe_cli.data import labels


def test_three_way_nli_collapses_to_entailment_or_not():
    assert [labels.nli3_to_nli2(y) for y in (0, 1, 2)] == [0, 1, 1]
    with pytest.raises(ValueError, match="valid: 0, 1, 2"):
        labels.nli3_to_nli2(3)


def test_predictions_collapse_the_same_way():
    predicted = np.array([0.0, 1.0, 2.0, 2.0, 0.0])  # predict() returns floats
    assert labels.collapse_nli_predictions(predicted).tolist() == [0, 1, 1, 1, 0]


def test_snli_drops_pairs_without_gold_label():
    assert [labels.snli_label(v) for v in ("0", "1", "2", "-1", 2)] == [0, 1, 2, None, 2]
    with pytest.raises(ValueError, match="valid: 0, 1, 2, or -1"):
        labels.snli_label("entailment")


def test_label_words_of_each_data_set():
    assert [labels.sick_entailment_label(w) for w in ("ENTAILMENT", "NEUTRAL", "CONTRADICTION")
            ] == [0, 1, 2]
    assert [labels.mnli_label(w) for w in ("entailment", "neutral", "contradiction")] == [0, 1, 2]
    assert [labels.rte_label(w) for w in ("entailment", "not_entailment")] == [0, 1]
    assert [labels.hans_label(w) for w in ("entailment", "non-entailment")] == [0, 1]
    assert [labels.scitail_label(w) for w in ("entails", "neutral")] == [0, 1]
    with pytest.raises(ValueError, match="is 'entailed'; valid: entailment, not_entailment"):
        labels.rte_label("entailed")


def test_sick_relatedness_is_rescaled_onto_stsb():
    assert [labels.sick_relatedness_to_stsb(s) for s in ("1", "3", "4.5", 5)] == [
        0.0, 2.5, 4.375, 5.0]
    with pytest.raises(ValueError, match=r"valid: a number in \[1, 5\]"):
        labels.sick_relatedness_to_stsb("0.5")


def test_stsb_scores_must_be_in_range():
    assert labels.stsb_score("3.800") == pytest.approx(3.8)
    with pytest.raises(ValueError, match=r"is 'n/a'; valid: a number in \[0, 5\]"):
        labels.stsb_score("n/a")


def test_answer_selection_reads_as_qnli():
    assert [labels.answer_to_nli2(v) for v in (1, 0, "1", "0")] == [0, 1, 0, 1]


def test_star_ratings_to_polarity():
    assert [labels.stars_to_polarity(s) for s in (1, 2, 3, 4, 5)] == [0, 0, None, 1, 1]


def test_bridges_exist_only_between_nli_spaces():
    assert labels.bridge(labels.NLI2, labels.NLI3).gold is labels.nli3_to_nli2
    assert labels.bridge(labels.NLI3, labels.NLI2).predictions is labels.collapse_nli_predictions
    assert labels.bridge(labels.SENTIMENT, labels.SENTIMENT) == labels.Bridge()
    assert labels.bridge(labels.SENTIMENT, labels.NLI2) is None
    assert labels.bridge(labels.SIMILARITY, labels.PARAPHRASE) is None
