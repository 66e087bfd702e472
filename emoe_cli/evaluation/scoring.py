"""A model's ID and OOD results on a workload's data, as emoe-run scores them after training:
the same loaders (`trainer.eval_batch_size`), scorer, OOD label maps and `moe.eval_as`."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from accelerate import Accelerator
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from emoe_cli.evaluation.predictions import PredictionWriter
from emoe_cli.moe.receipt import expert_mode


def score_task(model: torch.nn.Module, workload, cfg: DictConfig, accelerator: Accelerator,
               writer: PredictionWriter | None = None, emoe: bool = True
               ) -> tuple[dict, dict[str, dict]]:
    """(ID result, {OOD set: result}); `emoe`: evaluate converted layers as `moe.eval_as`
    says (a dense model has none). With `writer`, each split's predictions are saved."""
    data, evaluate = workload.data, workload.evaluate

    def loader(split) -> DataLoader:
        return accelerator.prepare(DataLoader(split, batch_size=cfg.trainer.eval_batch_size,
                                              collate_fn=workload.collate,
                                              num_workers=cfg.trainer.num_workers))

    def keep(split: str) -> dict:
        return {} if writer is None else {"keep": writer.keep(split)}

    model = accelerator.prepare(model)
    mode = cfg.moe.get("eval_as", "emoe") if emoe and cfg.moe.enabled else None
    with expert_mode(model, mode) if mode else nullcontext():
        id_result = evaluate(model, loader(data.validation), accelerator, "ID eval", None,
                             **keep("id"))
        ood = {name: evaluate(model, loader(split), accelerator, f"OOD {name}",
                              data.prediction_maps.get(name), **keep(f"ood.{name}"))
               for name, split in data.ood.items()}
    return id_result, ood
