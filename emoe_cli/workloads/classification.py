"""Scoring for classifiers and regressors: predictions against labels, by the task's metrics."""

from __future__ import annotations

from emoe_cli.evaluation.evaluate import predict
from emoe_cli.evaluation.metrics import compute_metrics, score


def classification_scorer(metric_names):
    """A Workload.evaluate for a model whose outputs carry `logits` and batches `labels`."""
    names = list(metric_names)

    def evaluate(model, loader, accelerator, desc="eval", prediction_map=None) -> dict:
        predictions, labels = predict(model, loader, accelerator, desc=desc)
        if prediction_map is not None:  # e.g. MNLI's 3 classes scored on 2-way HANS
            predictions = prediction_map(predictions)
        metrics = compute_metrics(names, predictions, labels)
        return {"metrics": metrics, "score": score(metrics), "num_examples": int(len(labels))}

    return evaluate
