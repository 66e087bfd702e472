"""Scoring for classifiers and regressors: predictions against labels, by the task's metrics."""

from __future__ import annotations

from emoe_cli.evaluation.evaluate import predict
from emoe_cli.evaluation.metrics import compute_metrics, score


def classification_scorer(metric_names):
    """A Workload.evaluate for a model whose outputs carry `logits` and batches `labels`.

    `keep`, when given, receives the split's per-example predictions (`eval.save_predictions`)
    from the same pass that computes the metrics.
    """
    names = list(metric_names)

    def evaluate(model, loader, accelerator, desc="eval", prediction_map=None,
                 keep=None) -> dict:
        found = predict(model, loader, accelerator, desc=desc, with_logits=keep is not None)
        predictions, labels = found[:2]
        model_predictions = predictions
        if prediction_map is not None:  # e.g. MNLI's 3 classes scored on 2-way HANS
            predictions = prediction_map(predictions)
        metrics = compute_metrics(names, predictions, labels)
        if keep is not None:
            from emoe_cli.evaluation.predictions import SplitPredictions

            logits = found[2]
            keep(SplitPredictions(labels, predictions,
                                  logits if logits.shape[-1] > 1 else None,
                                  model_predictions if prediction_map is not None else None))
        return {"metrics": metrics, "score": score(metrics), "num_examples": int(len(labels))}

    return evaluate
