"""The model a `Source` names, rebuilt as the run had it at its selected epoch.

A saved EMoE folder goes through `load_emoe`, a dense folder through the workload's own
loader (as emoe-run reloads its dense export), and a checkpoint is rebuilt the way the run
built its model (pre-trained weights, the same conversion and LoRA) before its weights are
loaded: the best epoch's (`best_state.safetensors`, what the run reports) when the checkpoint
has them, else the last step's (`model.safetensors`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from emoe_cli.errors import UserError
from emoe_cli.evaluation.sources import Source

BEST, LAST = "best_state.safetensors", "model.safetensors"  # training/checkpoint.py


def model_weights(cfg: DictConfig, source: Source) -> str:
    """Where the tokenizer or image processor comes from: the model folder itself (saved
    beside the weights), or for a checkpoint the run's pre-trained weights."""
    if source.kind == "checkpoint":
        from emoe_cli.models.pretrained import resolve_weights

        return resolve_weights(cfg.model.name_or_path, cfg.model.get("gguf_file"),
                               cfg.model.get("missing_hint"))
    return str(source.folder)


def check_labels(cfg: DictConfig, source: Source) -> None:
    """A saved classifier scores only a task with its number of outputs (a regressor: 1)."""
    if source.kind == "checkpoint" or cfg.task.get("kind", "text") not in ("text", "image"):
        return  # a checkpoint's head is built from the config; a causal LM has no labels
    import transformers

    outputs = transformers.AutoConfig.from_pretrained(source.folder).num_labels
    if outputs != cfg.task.num_labels:
        raise UserError(f"task={cfg.task.name}: {cfg.task.num_labels} label(s), but the model at "
                        f"load={source.folder} has {outputs} output(s); valid: a task with "
                        f"{outputs} label(s)" + (" (regression)" if outputs == 1 else ""))


def load_model(cfg: DictConfig, source: Source, workload) -> tuple[torch.nn.Module, dict]:
    """(model, notes for the record) for `source`; a UserError when it does not fit `cfg`."""
    if source.kind == "emoe":
        from emoe_cli.moe.serialize import load_emoe

        try:
            return load_emoe(source.folder), {}
        except (ValueError, OSError) as error:
            raise UserError(f"load={source.folder}: {error}") from None
    if source.kind == "dense":
        return workload.load_model(str(source.folder)), {}
    return rebuild_checkpoint(cfg, source, workload)


def rebuild_checkpoint(cfg: DictConfig, source: Source, workload) -> tuple[torch.nn.Module, dict]:
    from safetensors.torch import load_file

    from emoe_cli.experiment.method import convert
    from emoe_cli.training.lora import apply_lora_config, lora_enabled

    model = workload.load_model(model_weights(cfg, source))
    if cfg.moe.enabled:
        convert(model, cfg)
    if lora_enabled(cfg):
        model = apply_lora_config(model, cfg.lora)
    which = "best" if (source.folder / BEST).is_file() else "last"
    path = source.folder / (BEST if which == "best" else LAST)
    state = load_file(str(path))
    try:
        loaded = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes differ: another N, k, model or task
        raise UserError(mismatch(source, path, str(error).splitlines()[1:2])) from None
    missing = [k for k in loaded.missing_keys if not tied(model, k, state)]
    if loaded.unexpected_keys or missing:
        raise UserError(mismatch(source, path, [f"unexpected {loaded.unexpected_keys[:2]}, "
                                                f"missing {missing[:2]}"]))
    return model, {"weights": which, "base_weights": model_weights(cfg, source)}


def tied(model: torch.nn.Module, key: str, state: dict) -> bool:
    """A key safetensors left out because its tensor is shared with one that was saved."""
    params = dict(model.named_parameters(remove_duplicate=False))
    if key not in params:
        return False
    pointer = params[key].data_ptr()
    return any(name != key and name in state and tensor.data_ptr() == pointer
               for name, tensor in params.items())


def mismatch(source: Source, path: Path, detail: list[str]) -> str:
    where = "the run's config.json" if source.run_config is not None else "the command line"
    return (f"load={source.folder}: {path.name} does not fit the model {where} describes "
            f"({' '.join(d.strip() for d in detail)}); valid: the config of the run that "
            "wrote the checkpoint")
