"""Per-example predictions (`eval.save_predictions`): one JSONL file per scored split.

Each line is one example of the split in the order it was scored: `index` (its position in
the evaluated split, after `data.max_eval_samples`), `label`, `prediction` (what the metrics
were computed on) and, for classifiers, `logits`; an OOD set scored through a label map
(MNLI's 3 classes on 2-way HANS) also keeps the model's own class as `model_prediction`.
Regression tasks (STS-B) write floats and no logits. The files sit in `predictions/` of the
run folder: `id.jsonl` and `ood.<name>.jsonl`, the same paths as the results.json keys, so
`rescore` on a file gives back that split's `metrics` and `score`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoe_cli.errors import UserError

FOLDER = "predictions"
# Kinds of task whose scorer sees one prediction per example (a causal LM scores tokens).
PER_EXAMPLE_KINDS = ("text", "image")


@dataclass
class SplitPredictions:
    """What a classifier or regressor produced on one split, gathered in dataset order."""

    labels: np.ndarray
    predictions: np.ndarray  # scored: after the OOD set's label map, if any
    logits: np.ndarray | None = None  # [examples, classes]; None for regression
    model_predictions: np.ndarray | None = None  # before the label map (only with one)


Keep = Callable[[SplitPredictions], None]


def split_file(split: str) -> str:
    """`id` -> id.jsonl, `ood.yelp` -> ood.yelp.jsonl (names as in results.json)."""
    return f"{split}.jsonl"


def rows(kept: SplitPredictions) -> list[dict]:
    """One JSON object per example; integers for class ids, floats for regression."""
    regression = kept.logits is None

    def value(x):
        return float(x) if regression else int(x)

    lines = []
    for index, (label, prediction) in enumerate(zip(kept.labels, kept.predictions)):
        row = {"index": index, "label": value(label), "prediction": value(prediction)}
        if kept.model_predictions is not None:
            row["model_prediction"] = int(kept.model_predictions[index])
        if kept.logits is not None:
            row["logits"] = [float(x) for x in kept.logits[index]]
        lines.append(row)
    return lines


def write_jsonl(path: Path, lines: list[dict]) -> None:
    """All lines or none: written to a temporary file, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            for line in lines:
                file.write(json.dumps(line, allow_nan=True) + "\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class PredictionWriter:
    """Writes each split's predictions under `<output_dir>/predictions/` and remembers the
    files (`written`: split -> path relative to the output folder, for results.json)."""

    def __init__(self, output_dir: str | Path, main_process: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.main_process = main_process
        self.written: dict[str, str] = {}

    def keep(self, split: str) -> Keep:
        """The `keep` callback a scorer calls with the split's predictions."""

        def write(kept: SplitPredictions) -> None:
            relative = Path(FOLDER) / split_file(split)
            if self.main_process:
                write_jsonl(self.output_dir / relative, rows(kept))
            self.written[split] = str(relative)

        return write

    def record(self) -> dict:
        """results.json's `predictions`: {"id": path, "ood": {name: path}}."""
        ood = {split[len("ood."):]: path for split, path in self.written.items()
               if split.startswith("ood.")}
        return {**({"id": self.written["id"]} if "id" in self.written else {}), "ood": ood}


def prediction_writer(cfg, output_dir: str | Path | None,
                      main_process: bool = True) -> PredictionWriter | None:
    """The run's writer when `eval.save_predictions` is on (else None); a UserError for a
    task whose scorer has no per-example predictions. Without an output folder (Python
    callers) the files go to a temporary one."""
    from omegaconf import OmegaConf

    if not OmegaConf.select(cfg, "eval.save_predictions", default=False):
        return None
    kind = cfg.task.get("kind", "text")
    if kind not in PER_EXAMPLE_KINDS:
        raise UserError(f"eval.save_predictions=true: task.kind={kind} is scored per token, "
                        f"with no per-example predictions; valid: false, or a task of kind "
                        f"{', '.join(PER_EXAMPLE_KINDS)}")
    return PredictionWriter(output_dir or tempfile.mkdtemp(prefix="emoe-predictions-"),
                            main_process)


def read_predictions(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rescore(path: str | Path, metric_names) -> dict:
    """A split's `metrics` and `score` computed again from its JSONL file (the same metric
    code as the run), e.g. to check a file against results.json."""
    from emoe_cli.evaluation.metrics import compute_metrics, score

    lines = read_predictions(path)
    # a regressor's values were float32 when the run scored them: the same numbers again
    dtype = np.float32 if lines and "logits" not in lines[0] else None
    metrics = compute_metrics(list(metric_names),
                              np.array([r["prediction"] for r in lines], dtype=dtype),
                              np.array([r["label"] for r in lines], dtype=dtype))
    return {"metrics": metrics, "score": score(metrics), "num_examples": len(lines)}
