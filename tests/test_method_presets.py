"""`method=` presets against the official command lines, value for value.

The table restates the official flags (Language/README.md:28-61 for language models,
Vision/README.md:38-63 and Vision/domainbed/algorithms.py:297 for ViT); a preset that drifts
from them fails here.
"""

import pytest
import torch

from emoe_cli.moe import emoefy
from emoe_cli.training.loop import build_optimizer
from emoe_cli.training.lora import apply_lora
from tests.conftest import tiny_gpt2
from tests.helpers import compose_config

# (method, model): (gate, --num_experts, --top_k, --expert_repeat, --moe_layers) or None (dense)
OFFICIAL = {
    ("dense", "bert-base-cased"): None,                              # README.md:28
    ("noisy", "bert-base-cased"): None,                              # README.md:31
    ("gmoe", "bert-base-cased"): ("cosine", 6, 1, 6, [10]),          # README.md:34
    ("emoe", "bert-base-cased"): ("avg_k", 64, 16, 1, [10]),         # README.md:37
    ("emoe_learn", "bert-base-cased"): ("cosine", 64, 16, 1, [10]),  # README.md:40
    ("lora", "gpt2-xl"): None,                                       # README.md:49
    ("lora_block", "gpt2-xl"): None,                                 # README.md:52
    ("lora_gmoe", "gpt2-xl"): ("cosine", 8, 2, 8, [44]),             # README.md:55
    ("lora_emoe", "gpt2-xl"): ("avg_k", 64, 32, 1, [44]),            # README.md:58
    ("lora_emoe_learn", "gpt2-xl"): ("cosine", 64, 32, 1, [44]),     # README.md:61
    ("gmoe", "vit-s16"): ("cosine", 6, 2, 6, [10]),                  # Vision/README.md:48
    ("emoe", "vit-s16"): ("avg_k", 24, 4, 1, [8, 10]),               # Vision/README.md:62-63
}
# method: (train_blocks, train_outside_blocks) of the official freezing (peft.py:433-491)
LORA_TUNING = {"lora": ([], False), "lora_block": ([44], True), "lora_gmoe": ([44], True),
               "lora_emoe": ([], True), "lora_emoe_learn": ([], True)}


@pytest.mark.parametrize("method, model", sorted(OFFICIAL))
def test_method_preset_composes_to_the_official_flags(method, model):
    cfg = compose_config([f"method={method}", f"model={model}"])
    official = OFFICIAL[(method, model)]
    if official is None:
        assert not cfg.moe.enabled
    else:
        gate, num_experts, top_k, repeat, layers = official
        assert cfg.moe.enabled and cfg.moe.split == "cluster"
        repeat = cfg.gate.get("expert_repeat", 1)
        assert (cfg.gate.name, cfg.moe.num_experts, cfg.moe.top_k, repeat,
                list(cfg.moe.layers)) == (gate, num_experts, top_k, repeat, layers)
    assert cfg.moe.noise_lambda == (0.15 if method == "noisy" else 0.0)  # README.md:31
    if gate_is_cosine := (official is not None and official[0] == "cosine"):
        # cosine_top.py:8 (proj_dim=256, init_t=0.5); search_glue_no_trainer.py:229
        assert (cfg.gate.proj_dim, cfg.gate.temperature, cfg.gate.aux_loss_weight) == (
            256, 0.5, 0.01)
    assert gate_is_cosine == (method in ("gmoe", "emoe_learn", "lora_gmoe", "lora_emoe_learn"))
    if method.startswith("lora"):
        lora = cfg.lora
        assert (lora.mode, lora.r, lora.alpha, lora.dropout, lora.slow_lr_scale) == (
            "standard", 8, 16, 0.1, 0.1)  # peft.py:255, 425, 617-637
        assert (list(lora.train_blocks), lora.train_outside_blocks) == LORA_TUNING[method]
    else:
        assert not cfg.lora.enabled


def test_lora_grids_train_the_peft_scripts_epochs():
    """20 epochs (peft.py:150), at most 5 on MNLI, QNLI, QQP (peft.py:968-971); full
    fine-tuning 10, at most 3 on those (search_glue_no_trainer.py:136, 845-846)."""
    epochs = {task: compose_config(["experiment=lora_gpt2_xl", f"task={task}"]).trainer.epochs
              for task in ("cola", "mnli", "qnli", "qqp", "rte")}
    assert epochs == {"cola": 20, "mnli": 5, "qnli": 5, "qqp": 5, "rte": 20}
    full = {task: compose_config(["experiment=glue_bert_base", f"task={task}"]).trainer.epochs
            for task in ("cola", "mnli", "qqp")}
    assert full == {"cola": 10, "mnli": 3, "qqp": 3}


def trainable(model) -> set[str]:
    return {name.removeprefix("base_model.model.") for name, p in model.named_parameters()
            if p.requires_grad}


def test_official_lora_emoe_freezes_the_converted_block_and_trains_outside_the_blocks():
    """--tune_moe_layers_only --tune_gates_only --one_score (README.md:58): adapters, the head
    and GPT-2's final norm train; the converted block's FFN and the embeddings do not."""
    model = emoefy(tiny_gpt2(), num_experts=4, top_k=2, layers=[2])
    names = trainable(apply_lora(model, "standard", train_outside_blocks=True))
    assert {"transformer.ln_f.weight", "transformer.ln_f.bias"} <= names
    assert not any(n.startswith(("transformer.wte", "transformer.wpe")) for n in names)
    assert not any(".mlp." in n for n in names)
    assert all("lora_" in n or n.startswith(("transformer.ln_f", "score")) for n in names)
    plain = trainable(apply_lora(emoefy(tiny_gpt2(), num_experts=4, top_k=2, layers=[2]),
                                 "standard"))
    assert not any(n.startswith("transformer.ln_f") for n in plain)


def test_under_lora_everything_but_adapters_and_head_learns_at_a_tenth_of_the_rate():
    """search_glue_no_trainer_peft.py:617-637: names with lora / score / classifier at lr,
    all other trainable parameters at lr / 10."""
    model = apply_lora(tiny_gpt2(), "standard", train_blocks=[2], train_outside_blocks=True)
    trainer = compose_config([]).trainer
    optimizer = build_optimizer(model, trainer, slow_lr_scale=0.1)
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            assert id(parameter) not in rate, name
        elif "lora_" in name or ".score." in name or name.endswith("score.weight"):
            assert rate[id(parameter)] == trainer.lr, name
        else:
            assert rate[id(parameter)] == pytest.approx(trainer.lr / 10), name
    slow = [n for n, p in model.named_parameters() if p.requires_grad and rate[id(p)] < trainer.lr]
    assert any(".h.2.mlp." in n for n in slow) and any("ln_f" in n for n in slow)
    one_rate = build_optimizer(model, trainer)
    assert {group["lr"] for group in one_rate.param_groups} == {trainer.lr}
    assert sum(len(g["params"]) for g in one_rate.param_groups) == len(rate)
    assert torch.is_tensor(next(iter(model.parameters())))
