"""Text classification and regression (GLUE, GLUE-X OOD sets, your own files)."""

from __future__ import annotations

from omegaconf import DictConfig
from transformers import DataCollatorWithPadding

from emoe_cli.data.tasks import load_task_data
from emoe_cli.models.pretrained import load_classifier, load_tokenizer
from emoe_cli.workloads import Workload
from emoe_cli.workloads.classification import classification_scorer


def text_workload(cfg: DictConfig, weights: str) -> Workload:
    tokenizer = load_tokenizer(weights)
    data = load_task_data(cfg.task, cfg.data, tokenizer, cfg.model.max_length)
    return Workload(processor=tokenizer, data=data, collate=DataCollatorWithPadding(tokenizer),
                    load_model=lambda path: load_classifier(path, cfg.task.num_labels, tokenizer),
                    evaluate=classification_scorer(cfg.task.metrics))
