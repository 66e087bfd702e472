"""Which data picks the best epoch (and, in reports, the learning rate).

`dev` is the paper's rule: select on the same dev set whose scores are reported. `heldout`
is the clean protocol: a fixed part of the training data (carved with `data.subset_seed`,
so it is the same for every seed and method) selects, the dev set only reports, and OOD
sets are never looked at before the model is fixed.
"""

from __future__ import annotations

import datasets

from emoe_cli.data.common import open_fraction
from emoe_cli.errors import UserError

RULES = ("dev", "heldout")


def selection_rule(data_cfg) -> str:
    rule = data_cfg.get("selection") or "dev"
    if rule not in RULES:
        raise UserError(f"data.selection={rule!r} is invalid; valid: {', '.join(RULES)}")
    return rule


def split_for_selection(train: datasets.Dataset, data_cfg
                        ) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """(what is trained on, what selects); the second is None under the `dev` rule."""
    if selection_rule(data_cfg) == "dev":
        return train, None
    fraction = open_fraction(data_cfg.get("selection_fraction", 0.1), "data.selection_fraction")
    if len(train) < 2:
        raise UserError("data.selection=heldout needs at least 2 training examples")
    parts = train.train_test_split(test_size=fraction, seed=data_cfg.subset_seed, shuffle=True)
    return parts["train"], parts["test"]


def selection_record(data_cfg, selected: dict) -> dict:
    """What the record says about selection: the rule and the score that won."""
    record = {"selection": selection_rule(data_cfg), "selection_score": selected["score"]}
    if record["selection"] == "heldout":
        record["selection_fraction"] = data_cfg.get("selection_fraction", 0.1)
    return record
