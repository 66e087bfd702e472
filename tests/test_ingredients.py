"""The ingredient ablation: each arm composes to official EMoE less exactly one switch."""

import pytest
from omegaconf import OmegaConf

from emoe_cli.experiment.method import method_name
from emoe_cli.sweep.plan import planned_runs
from tests.helpers import compose_config

OFFICIAL = OmegaConf.to_container(compose_config(["profile=official"]).profile)
REMOVED = {"without_token_dropping": {"token_dropping": False},
           "without_b2_split": {"b2_split": False},
           "without_expert_dropout": {"expert_dropout": 0.0},
           "without_router_noise": {"router_noise": 0.0},
           "without_balance_loss": {"balance_loss_weight": 0.0},
           "without_router_fp32": {"router_fp32": False},
           "with_clipping": {"max_grad_norm": 1.0}}


def arm(name):
    return compose_config(["experiment=ablation_ingredients", f"ingredient={name}"])


@pytest.mark.parametrize("name", ["official", *REMOVED])
def test_each_emoe_arm_is_official_emoe_less_one_switch(name):
    cfg = arm(name)
    assert method_name(cfg) == "emoe" and cfg.ablation.ingredient == name
    assert OmegaConf.to_container(cfg.profile) == {**OFFICIAL, **REMOVED.get(name, {})}
    assert (cfg.moe.num_experts, cfg.moe.top_k, cfg.gate.name) == (64, 16, "avg_k")


def test_clean_dense_and_dense_with_expert_dropout_arms():
    clean = arm("clean")
    assert method_name(clean) == "emoe" and clean.profile.name == "clean"
    dense = arm("dense")
    assert method_name(dense) == "dense" and dense.profile == OFFICIAL  # same trainer
    dropout = arm("dense_expert_dropout")
    assert method_name(dropout) == "dense_expert_dropout"
    assert dropout.moe.top_k == dropout.moe.num_experts  # every expert: the dense FFN
    assert OmegaConf.to_container(dropout.profile) == {
        **OFFICIAL, "token_dropping": False, "router_noise": 0.0, "balance_loss_weight": 0.0}


def test_the_sweep_has_eleven_arms_and_five_seeds():
    runs = planned_runs(["experiment=ablation_ingredients"])
    assert len(runs) == 11 * 5
    assert {o for run in runs for o in run if o.startswith("seed=")} == {
        f"seed={s}" for s in range(5)}
    arms = {o.split("=")[1] for run in runs for o in run if o.startswith("ingredient=")}
    assert arms == {"official", "clean", "dense", "dense_expert_dropout", *REMOVED}
