"""Which runs share a report cell: those whose settings differ in seed and learning rate only.

Every other key of the run's identity (its resolved config less `sweep.identity_ignore`)
that differs between runs of one model, selection rule and method splits them into
variants, and the variant's label names those keys (`moe.top_k=8`), so ablations over
N, k, layers or the training-set size stay apart instead of averaging into one row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from emoe_cli.sweep.identity import without_keys

POOLED = ("seed", "trainer.lr")  # a cell averages over seeds and selects among rates
UNSET = "unset"                  # a key one run's config has and another's lacks
NO_DENSE = "(none)"              # no dense cell with this run's setting to compare with
BASELINE = "dense"


def _flatten(node: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", json.dumps(value, sort_keys=True, default=str)


def setting(config: dict[str, Any]) -> dict[str, str]:
    """The identity's keys less seed and rate: dotted key -> the value as JSON text."""
    sweep = config.get("sweep")
    ignore = sweep.get("identity_ignore") if isinstance(sweep, dict) else None
    ignore = [k for k in ignore if isinstance(k, str)] if isinstance(ignore, list) else []
    return dict(_flatten(without_keys(config, [*ignore, *POOLED])))


def _shown(text: str) -> str:
    value = json.loads(text) if text != UNSET else UNSET
    return value if isinstance(value, str) else text


def label_variants(rows: list[dict[str, Any]]) -> None:
    """Give each run (a dict with `setting`) its `variant` label and `dense_variant`.

    A key splits a (model, selection, method) row when its value differs among runs of one
    task; keys that only differ between tasks (the task's own settings) do not. The label
    lists the splitting keys with this run's values ('' when nothing splits).
    `dense_variant` is the label of the dense cell of the same task whose splitting keys
    all have this run's values: the one its paired differences and step-time ratio use.
    """
    by_task: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_task[_group(row)][row["task"]].append(row["setting"])
    splitting = {}
    for group, tasks in by_task.items():
        keys = set()
        for settings in tasks.values():
            for key in set().union(*settings):
                if len({s.get(key, UNSET) for s in settings}) > 1:
                    keys.add(key)
        splitting[group] = sorted(keys)
    dense: dict[tuple, dict[str, dict[str, str]]] = defaultdict(dict)
    for row in rows:
        row["variant_keys"] = {k: row["setting"].get(k, UNSET) for k in splitting[_group(row)]}
        row["variant"] = ", ".join(f"{k}={_shown(v)}" for k, v in row["variant_keys"].items())
        if row["method"] == BASELINE:
            dense[_cell_of_task(row)][row["variant"]] = row["variant_keys"]
    for row in rows:
        matches = [label for label, keys in dense[_cell_of_task(row)].items()
                   if all(row["setting"].get(k, UNSET) == v for k, v in keys.items())]
        row["dense_variant"] = (row["variant"] if row["method"] == BASELINE else
                                matches[0] if len(matches) == 1 else NO_DENSE)


def _group(row: dict[str, Any]) -> tuple:
    return row["model"], row["selection"], row["method"]


def _cell_of_task(row: dict[str, Any]) -> tuple:
    return row["model"], row["selection"], row["task"]
