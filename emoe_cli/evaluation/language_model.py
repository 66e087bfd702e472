"""Scoring a causal LM on response tokens: held-out loss, perplexity and next-token accuracy.

Sums are kept per example and gathered across processes, then divided once by the number of
response tokens in the whole split: a token-weighted mean, not a mean of batch means.
`token_accuracy` is the run's metric (higher is better, so best-epoch selection works as for
any task); `loss` and `perplexity` = exp(loss) sit next to it in the result.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from emoe_cli.data.instructions import IGNORE_INDEX

# Rows per forward are capped so that the [rows, length, vocab] logits stay near this many
# token positions (a 49k vocabulary in float32: about 0.8 GB), whatever the eval batch size.
EVAL_TOKENS_PER_FORWARD = 4096


def response_sums(logits: torch.Tensor, labels: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per example: summed NLL, correct next-token guesses and number of scored tokens.

    Position t predicts label t + 1; labels equal to -100 (prompt, padding) are not scored.
    """
    logits, targets = logits[:, :-1].float(), labels[:, 1:]
    scored = targets != IGNORE_INDEX
    nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                          reduction="none")
    correct = (logits.argmax(dim=-1) == targets) & scored
    return nll.sum(dim=1), correct.sum(dim=1), scored.sum(dim=1)


def lm_result(nll: float, correct: int, tokens: int, examples: int) -> dict:
    """The split's result in the run record's shape, from its token-level totals."""
    if tokens == 0:
        raise ValueError("no response tokens to score (every label is -100)")
    loss = nll / tokens
    accuracy = correct / tokens
    return {"metrics": {"token_accuracy": accuracy}, "score": accuracy, "loss": loss,
            "perplexity": math.exp(loss) if loss < 700 else math.inf,
            "num_examples": examples, "num_tokens": tokens}


def batch_sums(model: torch.nn.Module, batch: dict, accelerator: Accelerator
               ) -> tuple[torch.Tensor, ...]:
    """`response_sums` for a batch, run a few rows at a time to bound the logits' memory."""
    rows = max(1, EVAL_TOKENS_PER_FORWARD // batch["input_ids"].shape[1])
    parts = []
    for start in range(0, batch["input_ids"].shape[0], rows):
        chunk = {k: v[start:start + rows] for k, v in batch.items()}
        labels = chunk.pop("labels")
        with accelerator.autocast():
            logits = model(**chunk).logits
        parts.append(response_sums(logits, labels))
    return tuple(torch.cat(column) for column in zip(*parts))


@torch.no_grad()
def score_language_model(model: torch.nn.Module, loader: DataLoader, accelerator: Accelerator,
                         desc: str = "eval", prediction_map=None, keep=None) -> dict:
    """A Workload.evaluate for causal LMs whose batches carry response-only `labels`."""
    if keep is not None:
        raise ValueError("a language model is scored per token: no per-example predictions")
    if prediction_map is not None:
        raise ValueError("a language model's OOD sets share its vocabulary: no prediction map")
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64)
    examples = 0
    for batch in tqdm(loader, desc=desc, leave=False,  # off without a TTY (disable=None)
                      disable=None if accelerator.is_local_main_process else True):
        # gathered once per batch, so accelerate drops the last batch's padding duplicates
        sums = accelerator.gather_for_metrics(batch_sums(model, batch, accelerator))
        totals += torch.stack([s.double().sum().cpu() for s in sums])
        examples += int(sums[0].numel())
    nll, correct, tokens = totals.tolist()
    return lm_result(nll, int(correct), int(tokens), examples)
