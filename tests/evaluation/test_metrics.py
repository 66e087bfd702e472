import pytest

from emoe_cli.evaluation.metrics import compute_metrics, score


def test_accuracy_and_f1_worked_by_hand():
    # 4 of 6 right; positives: tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, f1 2/3
    predictions = [1, 1, 1, 0, 0, 0]
    labels = [1, 1, 0, 1, 0, 0]
    metrics = compute_metrics(["accuracy", "f1"], predictions, labels)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert score(metrics) == pytest.approx((4 / 6 + 2 / 3) / 2)


def test_matthews_by_hand():
    # tp=2 tn=2 fp=1 fn=1: (4 - 1) / sqrt(3 * 3 * 3 * 3) = 1/3
    metrics = compute_metrics(["matthews_correlation"], [1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 0, 0])
    assert metrics["matthews_correlation"] == pytest.approx(1 / 3)


def test_correlations_by_hand():
    metrics = compute_metrics(["pearson", "spearmanr"], [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0])
    assert metrics["spearmanr"] == pytest.approx(1.0)
    # centred x = (-1.5, -0.5, 0.5, 1.5), y = (-3.25, -1.25, 0.75, 3.75):
    # r = 11.5 / sqrt(5 * 26.75)
    assert metrics["pearson"] == pytest.approx(11.5 / (5 * 26.75) ** 0.5)


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        compute_metrics(["bleu"], [1], [1])


def test_every_metric_name_has_its_function():
    """The config layer's names and the functions evaluation computes are the same set."""
    from emoe_cli.config.schema import METRIC_NAMES
    from emoe_cli.evaluation.metrics import METRICS

    assert set(METRICS) == set(METRIC_NAMES)
