"""Run a classifier or regressor over a split and collect its predictions with the labels."""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator,
            desc: str = "eval", with_logits: bool = False) -> tuple[np.ndarray, ...]:
    """Predictions (class ids, or values for regression) and labels, gathered across processes
    in dataset order; with `with_logits`, the logits too (for saved predictions).

    Runs under the accelerator's autocast (bf16/fp16 runs), also for a model it did not wrap.
    """
    model.eval()
    predictions, labels, scores = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False,  # off without a TTY (disable=None)
                      disable=None if accelerator.is_local_main_process else True):
        with accelerator.autocast():
            logits = model(**batch).logits
        guess = logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(dim=-1)
        gathered = accelerator.gather_for_metrics(
            (guess, batch["labels"], logits) if with_logits else (guess, batch["labels"]))
        predictions.append(gathered[0].float().cpu())
        labels.append(gathered[1].float().cpu())
        if with_logits:
            scores.append(gathered[2].float().cpu())
    found = (torch.cat(predictions).numpy(), torch.cat(labels).numpy())
    return (*found, torch.cat(scores).numpy()) if with_logits else found
