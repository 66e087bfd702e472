"""Instruction tuning of causal LMs (Alpaca format): response-only loss, scored by held-out
loss, perplexity and next-token accuracy on the responses."""

from __future__ import annotations

from omegaconf import DictConfig
from transformers import DataCollatorForSeq2Seq

from emoe_cli.data.instruction_task import load_instruction_task
from emoe_cli.data.instructions import IGNORE_INDEX
from emoe_cli.evaluation.language_model import score_language_model
from emoe_cli.models.pretrained import load_causal_lm, load_tokenizer
from emoe_cli.workloads import Workload


def causal_lm_workload(cfg: DictConfig, weights: str) -> Workload:
    tokenizer = load_tokenizer(weights)
    # Right padding keeps every sequence at positions 0..n-1 (LLaMA's rotary positions do not
    # follow the attention mask), so padded batches score as unpadded ones.
    tokenizer.padding_side = "right"
    data = load_instruction_task(cfg.task, cfg.data, tokenizer, cfg.model.max_length)
    # Pads input_ids / attention_mask with the tokenizer and labels with -100.
    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX)
    return Workload(processor=tokenizer, data=data, collate=collate,
                    load_model=lambda path: load_causal_lm(path, tokenizer),
                    evaluate=score_language_model)
