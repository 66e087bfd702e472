"""Assemble an instruction-tuning task's splits: train, held-out ID evaluation, OOD sets.

The data comes from local Alpaca-format files when `task.files` names any (split name ->
JSON/JSONL file or folder), else from the hub (`task.hub_id`, e.g. tatsu-lab/alpaca, which
has only a train split). Without an evaluation file, `task.heldout_fraction` of train is
carved off with `data.subset_seed` before any cap, so the held-out set is the same for every
seed, method and `data.max_train_samples`. OOD sets are other keys of `task.files`.
"""

from __future__ import annotations

import datasets
from transformers import PreTrainedTokenizerBase

from emoe_cli.data.common import bad_rows_policy, open_fraction
from emoe_cli.data.instructions import COLUMNS, read_instructions, tokenize_instructions
from emoe_cli.data.selection import split_for_selection
from emoe_cli.data.tasks import TaskData, cap, fraction
from emoe_cli.errors import DataError, UserError


def given_files(task) -> dict[str, str]:
    """`task.files` without its null entries (splits left to the hub or to carving)."""
    return {name: str(path) for name, path in (task.get("files") or {}).items()
            if path is not None}


def check_instruction_task(task) -> None:
    """Fail early, naming the key, on an instruction task config that cannot work."""
    files = given_files(task)
    if files and task.train_split not in files:
        raise UserError(f"task.files.{task.train_split} is missing: name the training file "
                        f"(task.train_split={task.train_split!r}); given: {', '.join(files)}")
    if not files and not task.get("hub_id"):
        raise UserError("task.files and task.hub_id are both empty; valid: "
                        "task.files.train=path/to/alpaca_data.json, or a hub data set id")
    for name in task.ood:
        if name not in files or name in (task.train_split, task.eval_split):
            others = [k for k in files if k not in (task.train_split, task.eval_split)]
            raise UserError(f"task.ood: {name!r} is not an extra key of task.files; valid: "
                            f"{', '.join(others) or 'add task.files.' + str(name) + '=<file>'}")
    open_fraction(task.get("heldout_fraction", 0.05), "task.heldout_fraction")


def read_hub(hub_id: str, split: str) -> datasets.Dataset:
    """An Alpaca-format split from the hub, in the canonical columns."""
    try:
        data = datasets.load_dataset(hub_id, split=split)
    except Exception as error:  # the hub raises many types; the user needs the name
        raise DataError(f"could not load {hub_id} split {split!r} from the hub "
                        f"({type(error).__name__}); use local files instead: "
                        f"task.files.train=path/to/alpaca_data.json") from error
    missing = [c for c in ("instruction", "output") if c not in data.column_names]
    if missing:
        raise DataError(f"{hub_id} has no column {missing[0]!r}; columns: "
                        f"{', '.join(data.column_names)}")
    if "input" not in data.column_names:
        data = data.add_column("input", [""] * len(data))
    return data.select_columns(list(COLUMNS))


def read_split(task, split: str) -> datasets.Dataset:
    files = given_files(task)
    if not files:
        return read_hub(task.hub_id, split)
    return read_instructions(files[split], f"task.files.{split}")


def train_and_heldout(task, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, ID evaluation): the evaluation file, or a fixed part carved from train."""
    train = read_split(task, task.train_split)
    if task.eval_split in given_files(task):
        return train, read_split(task, task.eval_split)
    if len(train) < 2:
        raise DataError(f"task.files.{task.train_split}: {len(train)} record; carving a "
                        "held-out split needs at least 2 (or give task.files."
                        f"{task.eval_split})")
    parts = train.train_test_split(test_size=task.get("heldout_fraction", 0.05), seed=seed)
    return parts["train"], parts["test"]


def load_instruction_task(task, data_cfg, tokenizer: PreTrainedTokenizerBase,
                          max_length: int) -> TaskData:
    """Read, carve, cap and tokenise every split the run needs."""
    check_instruction_task(task)
    seed = data_cfg.subset_seed
    with bad_rows_policy(task.get("bad_rows", "error")) as bad_rows:
        train, validation = train_and_heldout(task, seed)
        ood = {name: cap(read_split(task, name), data_cfg.max_eval_samples, seed)
               for name in task.ood}
    train = cap(train, data_cfg.max_train_samples, seed)
    train = fraction(train, data_cfg.get("train_fraction", 1.0), seed)
    train, held_out = split_for_selection(train, data_cfg)
    validation = cap(validation, data_cfg.max_eval_samples, seed)

    def encode(data: datasets.Dataset) -> datasets.Dataset:
        return tokenize_instructions(data, tokenizer, max_length)

    return TaskData(encode(train), encode(validation), {k: encode(v) for k, v in ood.items()},
                    selection=None if held_out is None else encode(held_out),
                    skipped_rows=dict(bad_rows.skipped))
