"""What a kind of task supplies to the runner: its data, model, batching and scoring.

The runner (convert, fine-tune, evaluate ID and OOD, record) is the same for every task; only
these pieces differ between text classification, image classification and language modelling.
`task.kind` picks one (`text` when a task does not say).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from emoe_cli.data.tasks import TaskData
from emoe_cli.errors import UserError

# evaluate(model, loader, accelerator, desc, prediction_map, keep=None) -> {"metrics", "score",
# ...}; `keep` (classifiers only) receives the per-example predictions (predictions.py)
Scorer = Callable[..., dict]


@dataclass
class Workload:
    """One run's task-specific pieces.

    `processor` (a tokenizer or image processor) is saved next to exported models;
    `load_model(weights)` builds the task model from pre-trained weights (also used to reload
    a dense export); `evaluate` scores a split, optionally mapping predictions into an OOD
    set's label space first; `record_extra` goes into the record's `extra` (e.g. which domain
    was held out); `train_groups`, when set, is the domain of each training row (for
    batches drawn from every domain, `task.batch_per_domain`).
    """

    processor: Any
    data: TaskData
    collate: Callable
    load_model: Callable[[str], torch.nn.Module]
    evaluate: Scorer
    record_extra: dict = field(default_factory=dict)
    train_groups: list[int] | None = None


def task_kind(task_cfg: DictConfig) -> str:
    return task_cfg.get("kind", "text")


def build_workload(cfg: DictConfig, weights: str) -> Workload:
    """The workload for `task.kind`, or a UserError listing the kinds there are."""
    from emoe_cli.workloads.registry import WORKLOADS

    kind = task_kind(cfg.task)
    if kind not in WORKLOADS:
        raise UserError(f"task.kind={kind!r} is invalid; valid: {', '.join(WORKLOADS)}")
    return WORKLOADS[kind](cfg, weights)
