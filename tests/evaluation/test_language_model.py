"""Held-out loss, perplexity and token accuracy: token-weighted, on response tokens only."""

import math

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader

from emoe_cli.evaluation.language_model import lm_result, response_sums, score_language_model
from tests.conftest import tiny_llama


def test_token_accuracy_and_nll_on_known_logits():
    # position t predicts label t + 1: scored targets are 2 (at t=0) and 0 (at t=1)
    logits = torch.tensor([[[0.0, 1.0, 3.0], [2.0, 0.0, 0.0], [0.0, 5.0, 0.0]]])
    labels = torch.tensor([[-100, 2, 0]])
    nll, correct, count = response_sums(logits, labels)
    expected = -(torch.log_softmax(logits[0, 0], -1)[2] + torch.log_softmax(logits[0, 1], -1)[0])
    assert torch.allclose(nll, expected.unsqueeze(0))
    assert (correct.item(), count.item()) == (2, 2)
    _, correct, _ = response_sums(logits, torch.tensor([[-100, 1, 0]]))
    assert correct.item() == 1  # argmax 2 at t=0 misses target 1


def test_result_is_token_weighted_with_perplexity_exp_loss():
    result = lm_result(nll=6.0, correct=3, tokens=4, examples=2)
    assert result["metrics"] == {"token_accuracy": 0.75} and result["score"] == 0.75
    assert result["loss"] == 1.5 and result["perplexity"] == pytest.approx(math.exp(1.5))
    with pytest.raises(ValueError, match="no response tokens"):
        lm_result(0.0, 0, 0, 1)


def _examples():
    """Two sequences of different lengths and different numbers of response tokens."""
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(3, 100, (9,), generator=generator).tolist()
    second = torch.randint(3, 100, (5,), generator=generator).tolist()
    return [{"input_ids": first, "labels": [-100] * 3 + first[3:]},   # 6 response tokens
            {"input_ids": second, "labels": [-100] * 4 + second[4:]}]  # 1 response token


def _collate(rows):
    width = max(len(r["input_ids"]) for r in rows)
    pad = [width - len(r["input_ids"]) for r in rows]
    return {"input_ids": torch.tensor([r["input_ids"] + [0] * p for r, p in zip(rows, pad)]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * p
                                            for r, p in zip(rows, pad)]),
            "labels": torch.tensor([r["labels"] + [-100] * p for r, p in zip(rows, pad)])}


def test_split_loss_weights_tokens_not_batches():
    model, rows = tiny_llama(), _examples()
    nll, tokens, correct = 0.0, 0, 0
    with torch.no_grad():  # by hand, one unpadded sequence at a time
        for row in rows:
            logits = model(torch.tensor([row["input_ids"]])).logits[0]
            targets = torch.tensor(row["labels"][1:])
            nll += F.cross_entropy(logits[:-1], targets, ignore_index=-100,
                                   reduction="sum").item()
            scored = targets != -100
            correct += int((logits[:-1].argmax(-1)[scored] == targets[scored]).sum())
            tokens += int(scored.sum())
    accelerator = Accelerator(cpu=True)
    for batch_size in (1, 2):  # batch means would give (l1 + l2) / 2 with batch_size=1
        loader = accelerator.prepare(DataLoader(rows, batch_size=batch_size,
                                                collate_fn=_collate))
        result = score_language_model(model, loader, accelerator)
        assert result["num_tokens"] == tokens == 7 and result["num_examples"] == 2
        assert result["loss"] == pytest.approx(nll / tokens, rel=1e-5)
        assert result["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)
        assert result["metrics"]["token_accuracy"] == correct / tokens
