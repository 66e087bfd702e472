"""Image classification under domain shift (`task.kind: image`): DomainBed's leave-one-domain-
out protocol on ImageFolder data sets (PACS, VLCS, ...) or the digits domains.

ID is the held-in domains' carved validation split (it also picks the best epoch); the one
OOD set is the held-out domain, under its own name. The classifier head is sized to the
task, whatever the checkpoint was trained for.
"""

from __future__ import annotations

import logging

import transformers
from omegaconf import DictConfig

from emoe_cli.config.schema import METRIC_NAMES
from emoe_cli.data.common import open_fraction
from emoe_cli.data.domainbed import held_out_index, leave_one_out, read_domains
from emoe_cli.data.pixels import PixelEncoder, encode, encode_domainbed
from emoe_cli.data.selection import split_for_selection
from emoe_cli.data.tasks import TaskData, cap, fraction
from emoe_cli.errors import UserError
from emoe_cli.models.drop_path import add_drop_path
from emoe_cli.models.pretrained import load_config, load_pretrained
from emoe_cli.workloads import Workload
from emoe_cli.workloads.classification import classification_scorer

log = logging.getLogger("emoe")


PIPELINES = ("processor", "domainbed")  # the model's image processor, or DomainBed's own


def load_image_processor(weights: str):
    return load_pretrained(transformers.AutoImageProcessor, weights)


def load_image_classifier(weights: str, num_labels: int) -> transformers.PreTrainedModel:
    """The pre-trained body with a `num_labels`-way head (a new one if the sizes differ)."""
    return load_pretrained(transformers.AutoModelForImageClassification, weights,
                           num_labels=num_labels, ignore_mismatched_sizes=True)


def check_image_task(task) -> None:
    """Fail early, naming the key, on a bad vision task config."""
    unknown = [name for name in task.metrics if name not in METRIC_NAMES]
    if unknown:
        raise UserError(f"task.metrics: unknown metric {unknown[0]!r}; valid: "
                        f"{', '.join(METRIC_NAMES)}")
    held_out_index(list(task.domains), task.test_env)
    open_fraction(task.holdout_fraction, "task.holdout_fraction")
    if task.get("pipeline", "processor") not in PIPELINES:
        raise UserError(f"task.pipeline={task.pipeline!r} is invalid; valid: "
                        f"{', '.join(PIPELINES)}")


def pretraining_note(config, held_out: str) -> dict:
    """What a project-pre-trained backbone saw (its config says), and whether that includes
    the held-out domain, which would make the OOD number optimistic."""
    seen = getattr(config, "emoe_pretraining", None)
    if not seen:
        return {}
    note = {"backbone_pretraining": dict(seen),
            "ood_seen_in_pretraining": seen.get("domain") == held_out}
    if note["ood_seen_in_pretraining"]:
        log.warning("the backbone was pre-trained on %s, the held-out domain: its OOD score is "
                    "not an out-of-domain number", held_out)
    return note


def image_workload(cfg: DictConfig, weights: str) -> Workload:
    task, data_cfg = cfg.task, cfg.data
    check_image_task(task)
    processor, config = load_image_processor(weights), load_config(weights)
    encoder = PixelEncoder.for_model(processor, config.num_channels)
    expected = (config.num_channels, config.image_size, config.image_size)
    if tuple(encoder.image_shape()) != expected:
        raise UserError(f"model.name_or_path={weights!r}: its image processor makes "
                        f"{tuple(encoder.image_shape())} images, the model expects {expected}")

    split = leave_one_out(read_domains(task, data_cfg.root), task.test_env,
                          task.holdout_fraction, task.split_seed)
    seed = data_cfg.subset_seed
    train = cap(split.train, data_cfg.max_train_samples, seed)
    train = fraction(train, data_cfg.get("train_fraction", 1.0), seed)
    train, held_out = split_for_selection(train, data_cfg)
    validation = cap(split.validation, data_cfg.max_eval_samples, seed)
    test = cap(split.test, data_cfg.max_eval_samples, seed)

    def prepared(rows, training=False):
        if task.get("pipeline", "processor") == "domainbed":
            return encode_domainbed(rows, encoder, config.image_size, training)
        return encode(rows, encoder, task.get("preprocess", "per_batch"))

    groups = list(train["domain_index"]) if task.get("batch_per_domain", False) else None
    train = train.remove_columns("domain_index")
    held_out = None if held_out is None else held_out.remove_columns("domain_index")
    data = TaskData(prepared(train, training=True), prepared(validation),
                    {split.test_name: prepared(test)},
                    selection=None if held_out is None else prepared(held_out))
    notes = {"domains": {"test_env": split.test_name, "holdout_fraction": task.holdout_fraction,
                         "split_seed": task.split_seed, "sizes": split.sizes},
             **pretraining_note(config, split.test_name)}
    def load_model(path: str):
        model = load_image_classifier(path, task.num_labels)
        add_drop_path(model, float(cfg.model.get("drop_path_rate", 0.0)))
        return model

    return Workload(processor=processor, data=data, collate=encoder.collate,
                    load_model=load_model,
                    evaluate=classification_scorer(task.metrics), record_extra=notes,
                    train_groups=groups)
