"""Compose the project's Hydra config in tests, exactly as `emoe-run` would."""

from __future__ import annotations

from hydra import compose, initialize_config_module
from omegaconf import DictConfig


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The composed config; a value a structured config refuses raises `UserError` with the
    line emoe-run prints for it."""
    from emoe_cli.config.schema import composition_refusal
    from emoe_cli.errors import UserError

    with initialize_config_module("emoe_cli.conf", version_base="1.3"):
        try:
            return compose("config", overrides=overrides or [])
        except Exception as error:
            refusal = composition_refusal(error)
            if refusal is None:
                raise
            raise UserError(refusal) from None


def word_tokenizer(texts, **special):
    """A word-level fast tokenizer over the words of `texts` (plus `<unk>`, `<pad>`, `</s>`):
    one token per word or punctuation run, so token positions can be counted by hand."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    words = sorted({w for text in texts for w, _ in pre.pre_tokenize_str(text)})
    vocab = {word: i for i, word in enumerate(["<unk>", "<pad>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>",
                                   pad_token="<pad>", eos_token="</s>", **special)


USER_ERROR_EXIT = 2


def assert_one_line_error(code: int | str | None, err: str, message: str,
                          program: str = "emoe-run") -> str:
    """Bad input as every CLI must report it: exit code 2 and the whole of stderr one line,
    `<program>: error: ...`, containing `message`. Returns that line."""
    lines = err.strip().splitlines()
    assert code == USER_ERROR_EXIT, f"exit code {code!r}, not {USER_ERROR_EXIT}; stderr:\n{err}"
    assert len(lines) == 1, f"stderr has {len(lines)} lines, not one:\n{err}"
    assert lines[0].startswith(f"{program}: error: "), lines[0]
    assert message in lines[0], f"{message!r} not in {lines[0]!r}"
    return lines[0]
