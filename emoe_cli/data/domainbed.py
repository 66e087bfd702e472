"""DomainBed's leave-one-domain-out protocol: train on every domain but `task.test_env`,
select on a fixed share carved from each training domain, report the held-out domain.

The held-out domain is never used for selection: it is the OOD set, scored once the model
is fixed. As in DomainBed, the carved share (`task.holdout_fraction`, 20 %) depends on the
split seed (its trial seed) and on the domain's position, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from emoe_cli.data.common import open_fraction
from emoe_cli.data.digits import digits_domain
from emoe_cli.data.images import read_image_folders
from emoe_cli.errors import UserError

SOURCES = ("image_folder", "digits")


@dataclass
class DomainSplit:
    """Training rows (with their `domain_index`) and the ID validation rows (both from
    the held-in domains), and the held-out domain, named."""

    train: datasets.Dataset
    validation: datasets.Dataset
    test_name: str
    test: datasets.Dataset
    sizes: dict[str, dict[str, int]]  # per domain: rows trained on / validated / tested


def held_out_index(domains: list[str], test_env) -> int:
    """The held-out domain's index: `test_env` is an index into `domains` or a name."""
    if isinstance(test_env, str) and test_env in domains:
        return domains.index(test_env)
    if isinstance(test_env, int) and not isinstance(test_env, bool) and (
            0 <= test_env < len(domains)):
        return test_env
    raise UserError(f"task.test_env={test_env!r} is invalid; valid: 0..{len(domains) - 1} or a "
                    f"domain name ({', '.join(domains)})")


def carve(size: int, fraction: float, seed: int, domain_index: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept for training, rows carved for validation) of one domain, sorted.

    `int(size * fraction)` rows are carved, as DomainBed does; the permutation depends on
    (seed, domain index) only, so every method and run with that seed gets the same split.
    """
    order = np.random.default_rng([seed, domain_index]).permutation(size)
    carved = int(size * fraction)
    return np.sort(order[carved:]), np.sort(order[:carved])


def leave_one_out(domains: dict[str, datasets.Dataset], test_env, fraction: float,
                  seed: int) -> DomainSplit:
    """Split a task's domains (in the task's order) by the leave-one-domain-out protocol."""
    names = list(domains)
    held_out = names[held_out_index(names, test_env)]
    fraction = open_fraction(fraction, "task.holdout_fraction")
    train_parts, validation_parts, sizes = [], [], {}
    for index, name in enumerate(names):
        if name == held_out:
            sizes[name] = {"test": len(domains[name])}
            continue
        keep, carved = carve(len(domains[name]), fraction, seed, index)
        if len(carved) == 0 or len(keep) == 0:
            raise UserError(f"task.holdout_fraction={fraction}: domain {name!r} has "
                            f"{len(domains[name])} rows, too few to carve a validation part")
        rows = domains[name].select(keep)
        train_parts.append(rows.add_column("domain_index", [index] * len(keep)))
        validation_parts.append(domains[name].select(carved))
        sizes[name] = {"train": len(keep), "validation": len(carved)}
    return DomainSplit(datasets.concatenate_datasets(train_parts),
                       datasets.concatenate_datasets(validation_parts), held_out,
                       domains[held_out], sizes)


def read_domains(task, root: str | Path | None) -> dict[str, datasets.Dataset]:
    """The task's domains in its order, each as rows of (`image`, `label`)."""
    root = None if root is None else Path(root).expanduser()
    domains = list(task.domains)
    if task.source == "digits":
        return {name: digits_domain(name, root) for name in domains}
    if task.source == "image_folder":
        return read_image_folders(root, task.folder, domains, task.num_labels)
    raise UserError(f"task.source={task.source!r} is invalid for task.kind=image; valid: "
                    f"{', '.join(SOURCES)}")
