"""Assemble a task's data for one run: train, ID evaluation and OOD sets, tokenised."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
from transformers import PreTrainedTokenizerBase

from emoe_cli.data.sources import SOURCES, load_source
from emoe_cli.errors import UserError


@dataclass
class TaskData:
    """Tokenised splits: `ood` maps each OOD set's name to its data."""

    train: datasets.Dataset
    validation: datasets.Dataset
    ood: dict[str, datasets.Dataset]


def cap(data: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """A fixed random subset of at most `limit` rows (the same for every run with `seed`)."""
    if limit is None or limit >= len(data):
        return data
    return data.shuffle(seed=seed).select(range(limit))


def check_task(task) -> None:
    """Fail early, naming the key, if the task config refers to unknown data sets."""
    for key, names in (("task.source", [task.source]), ("task.ood", list(task.ood))):
        for name in names:
            if name not in SOURCES:
                raise UserError(f"{key}: unknown data set {name!r}; valid: "
                                f"{', '.join(sorted(SOURCES))}")


def load_task_data(task, data_cfg, tokenizer: PreTrainedTokenizerBase,
                   max_length: int) -> TaskData:
    """Read, cap and tokenise every split the run needs.

    Capped subsets depend on `data.subset_seed` only, so runs that differ in seed or method
    see the same examples.
    """
    check_task(task)
    root, seed = data_cfg.root, data_cfg.subset_seed
    train = cap(load_source(task.source, task.train_split, root), data_cfg.max_train_samples,
                seed)
    validation = cap(load_source(task.source, task.eval_split, root),
                     data_cfg.max_eval_samples, seed)
    ood = {name: cap(load_source(name, "test", root), data_cfg.max_eval_samples, seed)
           for name in task.ood}

    def encode(data: datasets.Dataset) -> datasets.Dataset:
        return tokenize(data, tokenizer, max_length, float_labels=task.num_labels == 1)

    return TaskData(encode(train), encode(validation), {k: encode(v) for k, v in ood.items()})


def tokenize(data: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int,
             float_labels: bool = False) -> datasets.Dataset:
    """Token ids for `text_a` (and `text_b` when present); padding is left to the collator."""

    def encode(batch):
        pair = batch["text_b"] if any(t is not None for t in batch["text_b"]) else None
        encoded = tokenizer(batch["text_a"], pair, truncation=True, max_length=max_length)
        encoded["labels"] = [float(y) if float_labels else int(y) for y in batch["label"]]
        return encoded

    return data.map(encode, batched=True, remove_columns=data.column_names,
                    desc="tokenizing", load_from_cache_file=False)
