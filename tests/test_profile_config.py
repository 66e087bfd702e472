"""The `profile` config group: its default, what it sets, the record, the identity, bad input."""

from __future__ import annotations

import pytest

from emoe_cli.cli.train import new_record
from emoe_cli.config.checks import check_group_choices, validate
from emoe_cli.errors import UserError
from emoe_cli.experiment.method import balance_loss_weight
from emoe_cli.experiment.recipe import Recipe
from emoe_cli.sweep.identity import run_identity
from emoe_cli.tracking.records import RunResult
from tests.conftest import tiny_llama
from tests.helpers import compose_config


def test_official_is_the_default_and_sets_no_clipping():
    cfg = compose_config()
    assert cfg.profile.name == "official" and cfg.trainer.max_grad_norm == 0.0
    assert compose_config(["profile=clean"]).trainer.max_grad_norm == 1.0
    assert compose_config(["trainer.max_grad_norm=0.5"]).trainer.max_grad_norm == 0.5


def test_llama_presets_use_clean_unless_told_otherwise():
    assert compose_config(["model=tinyllama"]).profile.name == "clean"
    assert compose_config(["model=tinyllama", "profile=official"]).profile.name == "official"


def test_profile_is_recorded_and_part_of_the_identity():
    official, clean = new_record(compose_config()), new_record(compose_config(["profile=clean"]))
    assert (official.to_dict()["profile"], clean.to_dict()["profile"]) == ("official", "clean")
    ignore = compose_config().sweep.identity_ignore
    assert run_identity(official.config, ignore) != run_identity(clean.config, ignore)
    switched = new_record(compose_config(["profile.expert_dropout=0.0"]))
    assert run_identity(switched.config, ignore) != run_identity(official.config, ignore)


@pytest.mark.parametrize("overrides,weight", [
    ([], 0.01),                                                 # Tutel's loss, every layer
    (["profile=clean"], 0.0),                                   # avg-k: none
    (["profile=clean", "gate=learned", "gate.aux_loss_weight=0.02"], 0.02),
    (["moe=dense"], 0.0),
])
def test_balance_loss_weight_comes_from_the_profile_else_the_gate(overrides, weight):
    assert balance_loss_weight(compose_config(overrides)) == weight


@pytest.mark.parametrize("override,message", [
    ("profile.expert_dropout=1.5", "profile.expert_dropout=1.5 is invalid; valid: a number in"),
    ("profile.router_noise=0", "profile.balance_loss_weight=0.01 needs profile.router_noise > 0"),
    ("+profile.dropout=0.1", "profile.dropout is unknown; valid: "),
    ("profile.token_dropping=maybe", "profile.token_dropping='maybe' is invalid; valid: true "
                                     "or false"),
    ("profile.router_noise=loud", "profile.router_noise='loud' is invalid; valid: a number"),
])
def test_bad_switches_are_one_line_naming_the_key(override, message):
    with pytest.raises(UserError, match=message):
        validate(compose_config([override]))


def test_unknown_profile_names_the_valid_ones():
    assert check_group_choices(["profile=tutel"]) == (
        "profile=tutel is unknown; valid: clean, official")


def test_official_on_a_llama_model_is_refused_before_loading(tmp_path):
    tiny_llama().save_pretrained(tmp_path / "llama")
    cfg = compose_config(["task=alpaca", "model=smollm2-135m", "profile=official",
                          f"model.name_or_path={tmp_path / 'llama'}", "moe.layers=[0]",
                          "logger=none"])
    with pytest.raises(UserError, match="profile.token_dropping=True does not apply to model "
                                        "family 'llama'"):
        Recipe(cfg, RunResult(), identity="", config={}).run()
