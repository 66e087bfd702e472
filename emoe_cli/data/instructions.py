"""Alpaca-format instruction data: reading, the prompt template, and response-only labels.

A record has `instruction`, an optional `input` and `output`. The model reads the standard
Alpaca prompt followed by the response and an end-of-sequence token, and is trained (and
scored) on the response tokens only: prompt positions carry the label -100, which the
causal-LM loss ignores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

from emoe_cli.data.common import report_skipped, skip_bad_row
from emoe_cli.data.files import JSON_SUFFIXES, records
from emoe_cli.errors import DataError

IGNORE_INDEX = -100  # the label torch's cross-entropy (and transformers' LM loss) skips
COLUMNS = ("instruction", "input", "output")

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def format_prompt(instruction: str, input: str | None = None) -> str:
    """The Alpaca prompt; an empty `input` uses the template without an input section."""
    if input and input.strip():
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


# --- reading ---------------------------------------------------------------------------------

def instruction_files(path: Path, key: str = "file") -> list[Path]:
    """`path` itself, or the JSON/JSONL files of a folder in name order; `key` names the
    config entry in errors."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in JSON_SUFFIXES)
        if not found:
            raise DataError(f"{key}: {path} is a folder without .json or .jsonl files")
        return found
    if not path.is_file():
        raise DataError(f"{key}: missing file {path}")
    if path.suffix.lower() not in JSON_SUFFIXES:
        raise DataError(f"{key}: {path} has an unknown file type; valid endings: "
                        f"{', '.join(JSON_SUFFIXES)}")
    return [path]


def read_instructions(path: str | Path, key: str = "file") -> datasets.Dataset:
    """Every record of an Alpaca-format JSON/JSONL file (or folder of them).

    A record without a text `instruction` or `output` is a DataError naming file:line, or,
    under `task.bad_rows=skip`, counted and left out.
    """
    rows = []
    for file in instruction_files(Path(str(path)).expanduser(), key):
        rows += [row for row in _rows(file) if row is not None]
        report_skipped(str(file))
    if not rows:
        raise DataError(f"{key}: {path} has no usable instruction records")
    return datasets.Dataset.from_list(rows)


def _rows(file: Path) -> Iterator[dict[str, str] | None]:
    for where, record in records(file):
        try:
            yield instruction_row(record, where)
        except DataError as error:
            skip_bad_row(error, str(file))
            yield None


def instruction_row(record: Mapping[str, Any], where: str) -> dict[str, str]:
    """The canonical (instruction, input, output) strings of one record."""
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str):
            raise DataError(f"{where}: no text {key!r}; an Alpaca record needs "
                            f"'instruction' and 'output' (and optionally 'input')")
    extra = record.get("input")
    if extra is not None and not isinstance(extra, str):
        raise DataError(f"{where}: 'input' is {type(extra).__name__}; valid: text or absent")
    if not record["instruction"].strip():
        raise DataError(f"{where}: empty 'instruction'")
    return {"instruction": record["instruction"], "input": extra or "",
            "output": record["output"]}


# --- tokenising ------------------------------------------------------------------------------

def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer starts a text with its BOS token (LLaMA does, SmolLM2 does not)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]


def truncate(prompt: list[int], response: list[int], max_length: int,
             keep_prefix: int = 0) -> tuple[list[int], list[int]]:
    """Fit prompt + response into `max_length` tokens, keeping the response when possible.

    The prompt loses tokens first, from the left after its first `keep_prefix` (BOS) tokens,
    so the `### Response:` marker stays next to the answer. Only a response longer than what
    is left after min(prompt, max_length / 2) prompt tokens is cut, from its end.
    """
    if len(prompt) + len(response) <= max_length:
        return prompt, response
    prompt_keep = min(len(prompt), max(max_length - len(response), max_length // 2))
    response = response[:max_length - prompt_keep]
    if prompt_keep < len(prompt):
        prefix = prompt[:min(keep_prefix, prompt_keep)]
        prompt = prefix + (prompt[len(prompt) - (prompt_keep - len(prefix)):]
                           if prompt_keep > len(prefix) else [])
    return prompt, response


def bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """What starts every example: the BOS token if the tokenizer adds one, else nothing."""
    return [tokenizer.bos_token_id] if adds_bos(tokenizer) else []


def encode_example(instruction: str, input: str, output: str,
                   tokenizer: PreTrainedTokenizerBase, max_length: int,
                   bos: list[int] | None = None) -> dict[str, list[int]]:
    """Token ids, attention mask and labels (-100 on the prompt) for one record.

    Prompt and response are tokenised separately, so the boundary is exact; the response
    ends with the tokenizer's EOS, which teaches the model to stop. `bos` is `bos_prefix`'s
    answer, passed in by callers that encode many records (found here when None).
    """
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token to end responses with; valid: a "
                        "causal-LM tokenizer (LLaMA, SmolLM2, GPT-2 ...)")
    bos = bos_prefix(tokenizer) if bos is None else bos
    prompt = bos + tokenizer(format_prompt(instruction, input),
                             add_special_tokens=False).input_ids
    response = tokenizer(output, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    prompt, response = truncate(prompt, response, max_length, keep_prefix=len(bos))
    ids = prompt + response
    return {"input_ids": ids, "attention_mask": [1] * len(ids),
            "labels": [IGNORE_INDEX] * len(prompt) + response}


def tokenize_instructions(data: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
                          max_length: int) -> datasets.Dataset:
    """`encode_example` over a split; the text columns are dropped."""
    if max_length < 2:
        raise DataError(f"model.max_length={max_length} leaves no room for a prompt and a "
                        "response; valid: 2 or more (256-512 is usual for Alpaca)")

    bos = bos_prefix(tokenizer)  # one probe of the tokenizer per split, not per record

    def encode(row):
        return encode_example(row["instruction"], row["input"], row["output"], tokenizer,
                              max_length, bos)

    return data.map(encode, remove_columns=data.column_names, desc="tokenizing",
                    load_from_cache_file=False)
