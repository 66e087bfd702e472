"""End-to-end instruction tuning (`task=alpaca`) on a tiny LLaMA saved with its own tokenizer."""

import json
import math

import pytest
import torch
import transformers

from emoe_cli.cli.train import run
from emoe_cli.data.instructions import PROMPT_WITH_INPUT
from emoe_cli.experiment import recipe
from emoe_cli.moe import emoe_modules
from emoe_cli.training.loop import fit
from tests.helpers import assert_one_line_error, compose_config, word_tokenizer

EMOE = ["moe.layers=[0,1]", "moe.num_experts=4", "moe.top_k=2", "moe.cluster_cache=null"]
WORDS = "red blue green cat dog sun moon big small one two three".split()


def _records(count: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    pick = [torch.randint(len(WORDS), (4,), generator=generator).tolist() for _ in range(count)]
    return [{"instruction": f"Repeat {WORDS[a]} {WORDS[b]}", "input": WORDS[c] if i % 2 else "",
             "output": f"{WORDS[a]} {WORDS[b]} {WORDS[d]}"} for i, (a, b, c, d) in enumerate(pick)]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> str:
    """A 2-block LLaMA (d_ff 64) with a word-level tokenizer over the template and WORDS."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = word_tokenizer([PROMPT_WITH_INPUT, "Repeat " + " ".join(WORDS)])
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32,
                                      intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128,
                                      eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("alpaca")
    return {"train": _write(folder / "train.jsonl", _records(24, 0)),
            "validation": _write(folder / "dev.jsonl", _records(8, 1)),
            "shifted": _write(folder / "shifted.jsonl", _records(6, 2))}


@pytest.fixture
def overrides(llama_dir, files) -> list[str]:
    return ["task=alpaca", "model=smollm2-135m", f"model.name_or_path={llama_dir}",
            "model.name=tiny-llama", "model.max_length=64", "logger=none",
            "trainer.checkpoint=false", "trainer.epochs=2", "trainer.batch_size=4",
            "trainer.eval_batch_size=4", "trainer.lr=1e-3", "trainer.device=cpu",
            f"task.files.train={files['train']}", f"task.files.validation={files['validation']}",
            f"+task.files.shifted={files['shifted']}", "task.ood=[shifted]"]


def _record(path) -> dict:
    return json.loads((path / "results.json").read_text())


def _check_lm_result(result: dict, examples: int) -> None:
    assert set(result["metrics"]) == {"token_accuracy"}
    assert 0.0 <= result["metrics"]["token_accuracy"] <= 1.0
    assert result["score"] == result["metrics"]["token_accuracy"]
    assert result["loss"] > 0 and result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["num_examples"] == examples and result["num_tokens"] == 4 * examples


@pytest.mark.slow
def test_emoe_instruction_tuning_records_loss_and_perplexity(overrides, tmp_path, capsys):
    run(compose_config([*overrides, *EMOE, "analysis.routing=true"]), tmp_path)
    record = _record(tmp_path)
    assert (record["status"], record["task"], record["method"]) == ("completed", "alpaca", "emoe")
    assert record["id"]["split"] == "validation"
    _check_lm_result(record["id"], 8)  # 3 answer words + EOS per example
    _check_lm_result(record["ood"]["shifted"], 6)
    assert record["conversion_receipt"]["max_abs_diff"] < 1e-5  # k = N is the dense model
    assert set(record["conversion_receipt"]["kept_share"]) == {"0", "1"}  # gated FFNs too
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    best = record["epochs"][record["best_epoch"] - 1]
    assert best["loss"] == record["id"]["loss"]  # each epoch keeps its held-out loss
    assert "perplexity" in capsys.readouterr().out.splitlines()[1]  # the summary's header
    routing = json.loads((tmp_path / record["routing_file"]).read_text())
    assert "ood/shifted" in json.dumps(routing)


@pytest.mark.slow
def test_dense_export_reloads_as_a_plain_causal_lm(overrides, tmp_path):
    run(compose_config([*overrides, "moe=dense", "moe.export_dense=true", "trainer.epochs=1"]),
        tmp_path)
    record = _record(tmp_path)
    assert record["status"] == "completed" and record["method"] == "dense"
    reloaded = record["dense_export"]["id"]
    assert reloaded["loss"] == pytest.approx(record["id"]["loss"], rel=1e-5)
    assert reloaded["metrics"] == record["id"]["metrics"]


@pytest.mark.slow
def test_heldout_splits_and_lora_on_llama_attention(overrides, tmp_path):
    run(compose_config([*overrides, *EMOE, "task.files.validation=null",
                        "task.heldout_fraction=0.25", "lora=standard", "trainer.epochs=1",
                        "data.selection=heldout", "data.selection_fraction=0.25"]), tmp_path)
    record = _record(tmp_path)
    assert record["selection"] == "heldout"  # 18 records train, 6 select, 6 report
    assert record["status"] == "completed" and record["method"] == "lora_emoe"
    assert record["id"]["num_examples"] == 6  # a quarter of the 24 training records
    assert 0 < record["lora"]["trainable_fraction"] < 0.5


@pytest.mark.slow
def test_skipped_rows_random_split_and_dense_training_reach_the_run(overrides, tmp_path,
                                                                    monkeypatch):
    """`task.bad_rows=skip` lands in results.json; `moe.train_as=dense` trains with every
    expert (and routes again afterwards); `moe.split=random` names the method."""
    train = _write(tmp_path / "train.jsonl", [*_records(12, 0), {"output": "no instruction"}])
    during = []

    def fit_and_look(model, *args, **kwargs):
        during.append({m.use_all_experts for m in emoe_modules(model)})
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(recipe, "fit", fit_and_look)
    run(compose_config([*overrides, *EMOE, f"task.files.train={train}", "task.bad_rows=skip",
                        "moe.split=random", "moe.train_as=dense", "trainer.epochs=1"]),
        tmp_path / "run")
    record = _record(tmp_path / "run")
    assert (record["status"], record["method"]) == ("completed", "emoe_random_train_dense")
    assert record["skipped_rows"] == {train: 1}
    assert during == [{True}]


@pytest.mark.parametrize("change, message", [
    ("task.files.train=/no/such.jsonl", "task.files.train: missing file /no/such.jsonl"),
    ("task.ood=[nope]", "task.ood: 'nope' is not an extra key of task.files; valid: shifted"),
    ("task.heldout_fraction=2", "task.heldout_fraction=2 is invalid"),
])
def test_user_errors_are_one_line_naming_the_key(overrides, tmp_path, capsys, change, message):
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*overrides, *EMOE, change]), tmp_path)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err, message)


def test_a_record_without_instruction_names_file_and_line(overrides, tmp_path, capsys):
    bad = _write(tmp_path / "bad.jsonl", [{"instruction": "a", "output": "b"}, {"output": "c"}])
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*overrides, *EMOE, f"task.files.train={bad}"]), tmp_path)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          f"{bad}:2: no text 'instruction'")
