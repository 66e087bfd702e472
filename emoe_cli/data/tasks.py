"""Assemble a task's data for one run: train, ID evaluation and OOD sets, tokenised.

A task config names a registered data set (`source: rte`) or `source: file` (bring your own
files, see files.py). Its OOD sets (`task.ood`, GLUE-X's pairing in the presets, then the
opt-in `task.ood_extra`) are registered data sets, or for a file task also keys of
`task.files`. An OOD set labelled in another space than the task's is scored through an
explicit bridge (labels.BRIDGES): RTE on SNLI/SICK maps their gold labels to 2-way, RTE on
MRPC reads paraphrase as entailment (GLUE-X), MNLI on HANS maps the model's 3-way predictions
to 2-way (`TaskData.prediction_maps`). A GLUE-X set that exists only as a local folder and is
absent is skipped with a warning (`data.ood_missing=skip`, recorded in `TaskData.missing_ood`)
or stops the run (`error`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase

from emoe_cli.config.schema import METRIC_NAMES
from emoe_cli.data.common import bad_rows_policy
from emoe_cli.data.files import FILE_SOURCE, check_file_task, is_file_task, read_task_file
from emoe_cli.data.labels import Bridge, LabelSpace, bridge
from emoe_cli.data.selection import split_for_selection
from emoe_cli.data.sources import SOURCES, check_root, load_source
from emoe_cli.errors import DataError, MissingData, UserError

log = logging.getLogger("emoe")


@dataclass
class TaskData:
    """Tokenised splits: `ood` maps each OOD set's name to its data.

    `prediction_maps` holds, for OOD sets scored in a coarser label space than the model
    predicts (MNLI on HANS), the function that maps predicted class ids into that space.
    """

    train: datasets.Dataset
    validation: datasets.Dataset
    ood: dict[str, datasets.Dataset]
    prediction_maps: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    skipped_rows: dict[str, int] = field(default_factory=dict)  # task.bad_rows=skip: per file
    missing_ood: dict[str, str] = field(default_factory=dict)  # OOD sets skipped: why
    selection: datasets.Dataset | None = None  # carved from train (data.selection=heldout)


def cap(data: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """A fixed random subset of at most `limit` rows (the same for every run with `seed`)."""
    if limit is None or limit >= len(data):
        return data
    return data.shuffle(seed=seed).select(range(limit))


def fraction(data: datasets.Dataset, share: float, seed: int) -> datasets.Dataset:
    """A fixed random `share` of the rows (at least one), for data-efficiency curves.

    With one seed, smaller shares are subsets of larger ones.
    """
    if share >= 1.0:
        return data
    return data.shuffle(seed=seed).select(range(max(1, round(share * len(data)))))


# --- checking the task config ---------------------------------------------------------------

def check_task(task) -> dict[str, Bridge]:
    """Fail early, naming the key, on a bad task config; return each OOD set's bridge."""
    unknown = [name for name in task.metrics if name not in METRIC_NAMES]
    if unknown:
        raise UserError(f"task.metrics: unknown metric {unknown[0]!r}; valid: "
                        f"{', '.join(METRIC_NAMES)}")
    space = task_space(task)
    return {name: ood_bridge(task, name, space, key) for key, name in ood_sets(task)}


def ood_sets(task) -> list[tuple[str, str]]:
    """(config key, name) of every OOD set to score: `task.ood`, then `task.ood_extra`."""
    pairs, seen = [], set()
    for key in ("ood", "ood_extra"):
        names = task.get(key) or []
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise UserError(f"task.{key}={names!r} is invalid; valid: a list of data set names")
        for name in names:
            if name not in seen:
                seen.add(name)
                pairs.append((f"task.{key}", name))
    return pairs


def task_space(task) -> LabelSpace | None:
    """The label space of the task's source (None for a file task: the user defines it)."""
    if is_file_task(task):
        check_file_task(task)
        return None
    if task.source not in SOURCES:
        raise UserError(f"task.source: unknown data set {task.source!r}; valid: "
                        f"{', '.join(sorted(SOURCES))}, or {FILE_SOURCE} for your own files")
    space = SOURCES[task.source].space
    if task.num_labels != space.num_labels:
        raise UserError(f"task.num_labels={task.num_labels} does not fit task.source="
                        f"{task.source} ({space.describe()}); valid: {space.num_labels}")
    return space


def ood_bridge(task, name: str, space: LabelSpace | None, key: str = "task.ood") -> Bridge:
    """How OOD set `name` is scored for this task, or a UserError listing the sets that fit."""
    if is_file_task(task) and name in (task.get("files") or {}):
        return Bridge()
    if name not in SOURCES:
        raise UserError(f"{key}: unknown data set {name!r}; valid: "
                        f"{', '.join(fitting_sets(task, space))}")
    ood_space = SOURCES[name].space
    if space is None:  # a file task: only the number of classes can be checked
        if ood_space.num_labels != task.num_labels:
            raise UserError(f"{key}: {name!r} has {ood_space.num_labels} label(s) "
                            f"({ood_space.describe()}) but task.num_labels={task.num_labels}")
        return Bridge()
    found = bridge(space, ood_space)
    if found is None:
        raise UserError(f"{key}: {name!r} ({ood_space.describe()}) cannot score a "
                        f"{task.source} model ({space.describe()}); valid: "
                        f"{', '.join(fitting_sets(task, space))}")
    return found


def fitting_sets(task, space: LabelSpace | None) -> list[str]:
    """The OOD set names this task could score: registered sets whose labels bridge to its
    space (for a file task: with as many labels, and its extra `task.files` keys)."""
    if space is None:
        splits = (task.train_split, task.eval_split)
        extra = [k for k in (task.get("files") or {}) if k not in splits]
        return sorted(extra) + [n for n, s in sorted(SOURCES.items())
                                if s.space.num_labels == task.num_labels]
    return [n for n, s in sorted(SOURCES.items()) if bridge(space, s.space) is not None]


# --- reading ---------------------------------------------------------------------------------

def read_split(task, split: str, root: str | Path | None) -> datasets.Dataset:
    """A training or ID evaluation split: the task's files, or its registered data set."""
    if is_file_task(task):
        return read_task_file(task, split)
    return load_source(task.source, split, root)


def read_ood(task, name: str, root: str | Path | None, link: Bridge) -> datasets.Dataset:
    """One OOD set in the task's label space (gold labels bridged where the bridge says so)."""
    if is_file_task(task) and name in (task.get("files") or {}):
        data = read_task_file(task, name)
    else:
        listed = ood_sets(task)
        key = next((k for k, other in listed if other == name), "task.ood")
        data = read_ood_source(name, root, [o for k, o in listed if k == key and o != name], key)
    if link.gold is not None:
        data = data.map(lambda batch: {"label": [link.gold(y) for y in batch["label"]]},
                        batched=True)
    return data


def read_ood_source(name: str, root: str | Path | None, others: list[str] | None = None,
                    key: str = "task.ood") -> datasets.Dataset:
    """A registered OOD set: from data.root if its folder is there, else from the hub.

    OOD sets are often not in a glue_data folder (HANS, SciTail, ...); reading those from the
    hub lets a local GLUE copy and hub-only OOD sets be used together. `others` (the other
    sets under the same config `key`) makes the error message suggest the override that drops
    this one.
    """
    source, local = SOURCES[name], check_root(root)
    if local is None or not source.hub or (local / source.folder).is_dir():
        return source.read(source.ood_split, local)
    log.info("OOD set %s: no %s folder under data.root, reading it from the hub", name,
             source.folder)
    try:
        return source.read(source.ood_split, None)
    except DataError as error:
        reason = type(error.__cause__).__name__ if error.__cause__ else error
        without = f"{key}=[{','.join(others or [])}]"
        raise DataError(f"{key}: {name!r} is neither under data.root ({local / source.folder} "
                        f"does not exist) nor loadable from the hub ({reason}); add it there "
                        f"or leave it out: {without}") from error


def load_task_data(task, data_cfg, tokenizer: PreTrainedTokenizerBase,
                   max_length: int) -> TaskData:
    """Read, cap and tokenise every split the run needs.

    Capped subsets and `data.train_fraction` depend on `data.subset_seed` only, so runs that
    differ in seed or method see the same examples.
    """
    bridges = check_task(task)
    root, seed = data_cfg.root, data_cfg.subset_seed
    with bad_rows_policy(task.get("bad_rows", "error")) as bad_rows:
        train = cap(read_split(task, task.train_split, root), data_cfg.max_train_samples, seed)
        train = fraction(train, data_cfg.get("train_fraction", 1.0), seed)
        train, held_out = split_for_selection(train, data_cfg)
        validation = cap(read_split(task, task.eval_split, root), data_cfg.max_eval_samples,
                         seed)
        ood, missing = read_ood_sets(task, bridges, root, missing_policy(data_cfg))
        ood = {name: cap(data, data_cfg.max_eval_samples, seed) for name, data in ood.items()}

    def encode(data: datasets.Dataset) -> datasets.Dataset:
        return tokenize(data, tokenizer, max_length, float_labels=task.num_labels == 1)

    prediction_maps = {name: link.predictions for name, link in bridges.items()
                       if link.predictions is not None}
    return TaskData(encode(train), encode(validation), {k: encode(v) for k, v in ood.items()},
                    prediction_maps, selection=None if held_out is None else encode(held_out),
                    skipped_rows=dict(bad_rows.skipped), missing_ood=missing)


MISSING_POLICIES = ("skip", "error")


def missing_policy(data_cfg) -> str:
    """`data.ood_missing`: what an absent local-only OOD set (GLUE-X's folders) does."""
    policy = data_cfg.get("ood_missing") or "skip"
    if policy not in MISSING_POLICIES:
        raise UserError(f"data.ood_missing={policy!r} is invalid; valid: "
                        f"{', '.join(MISSING_POLICIES)}")
    return policy


def read_ood_sets(task, bridges: dict[str, Bridge], root, policy: str
                  ) -> tuple[dict[str, datasets.Dataset], dict[str, str]]:
    """Every OOD set that can be read, and for each skipped one the reason (policy `skip`)."""
    ood, missing = {}, {}
    for name, link in bridges.items():
        try:
            ood[name] = read_ood(task, name, root, link)
        except MissingData as error:
            if policy == "error":
                raise
            log.warning("%s; skipped (data.ood_missing=error stops instead)", error)
            missing[name] = str(error)
    return ood, missing


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
