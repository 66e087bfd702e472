"""The DomainBed and LLaMA presets against the official runs, value for value.

The tables restate the official values (Vision/domainbed/hparams_registry.py:172-195,
algorithms.py:202-208, 297, 323, datasets.py:236; EMoE_LLaMA/run_7B_emo.sh:5-16,
moe_models.py:154); a preset that drifts from them fails here.
"""

import pytest

from emoe_cli.moe.layers import resolve_layers
from tests.helpers import compose_config

# task: (lr, weight decay) of the official vision runs (algorithm GMOE: dense, GMoE and EMoE)
DOMAINBED = {"pacs": (3e-5, 1e-6), "vlcs": (3e-5, 1e-6), "officehome": (1e-5, 1e-6),
             "terraincognita": (5e-5, 1e-4)}
BACKBONE = {"domainbed_vit_s": "facebook/deit-small-patch16-224",
            "domainbed_vit_b": "facebook/deit-base-patch16-224"}


@pytest.mark.parametrize("preset", sorted(BACKBONE))
@pytest.mark.parametrize("task", sorted(DOMAINBED))
def test_domainbed_presets_are_the_official_hparams(preset, task):
    cfg = compose_config([f"experiment={preset}", f"task={task}", "method=emoe"])
    trainer = cfg.trainer
    assert (trainer.lr, trainer.weight_decay) == DOMAINBED[task]
    assert (trainer.optimizer, trainer.lr_scheduler, trainer.warmup_ratio) == (
        "adam", "constant", 0.0)
    assert (trainer.batch_size, trainer.max_steps, trainer.eval_every_steps) == (32, 5000, 300)
    assert (cfg.task.pipeline, cfg.task.batch_per_domain) == ("domainbed", True)
    assert (trainer.early_stop_patience, trainer.max_grad_norm) == (0, 0.0)
    assert cfg.model.name_or_path == BACKBONE[preset] and cfg.model.drop_path_rate == 0.1
    assert (cfg.moe.num_experts, cfg.moe.top_k, list(cfg.moe.layers)) == (24, 4, [8, 10])
    assert (cfg.gate.name, cfg.task.holdout_fraction) == ("avg_k", 0.2)
    gmoe = compose_config([f"experiment={preset}", f"task={task}", "method=gmoe"])
    assert (gmoe.moe.num_experts, gmoe.moe.top_k, list(gmoe.moe.layers),
            gmoe.gate.expert_repeat, gmoe.gate.name) == (6, 2, [10], 6, "cosine")


def test_domainnet_keeps_its_official_rate():
    cfg = compose_config(["experiment=domainbed_vit_s", "task=domainnet"])
    assert (cfg.trainer.lr, cfg.trainer.weight_decay) == (5e-5, 0.0)


def test_alpaca_llama2_preset_is_run_7b_emo():
    cfg = compose_config(["experiment=alpaca_llama2_7b", "method=emoe"])
    trainer = cfg.trainer
    assert (trainer.lr, trainer.weight_decay, trainer.warmup_ratio) == (2e-5, 0.0, 0.03)
    assert (trainer.lr_scheduler, trainer.optimizer, trainer.epochs) == ("cosine", "adamw", 3)
    assert trainer.batch_size * trainer.gradient_accumulation_steps == 128  # 1 × 16 × 8 GPUs
    assert (trainer.precision, cfg.model.max_length) == ("bf16", 512)
    assert (cfg.moe.num_experts, cfg.moe.top_k, cfg.moe.select, cfg.gate.name) == (
        64, 16, "gate", "avg_k")
    assert list(cfg.moe.layers) == [28, 30]  # --split_start_layer 28 --split_every_layer 2


@pytest.mark.parametrize("start, every, blocks", [(28, 2, [28, 30]), (16, 4, [16, 20, 24, 28]),
                                                  (16, 2, list(range(16, 32, 2)))])
def test_the_official_split_rule_picks_the_shipped_layers(start, every, blocks):
    """Blocks b >= start with (b - start) % every == 0 of Llama-2-7B's 32 (moe_models.py:154)."""
    official = [b for b in range(32) if b >= start and (b - start) % every == 0]
    assert resolve_layers(f"from_{start}_every_{every}", 32) == official == blocks


def test_a_bad_split_rule_names_the_valid_rules():
    for bad in ("from_40_every_2", "from_16_every_0", "from_x_every_2"):
        with pytest.raises(ValueError, match="from_<start>_every_<n>"):
            resolve_layers(bad, 32)
