"""Every kind of bad config value is caught before any work, in one line naming the key."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from emoe_cli.config.checks import check_group_choices, validate
from emoe_cli.errors import UserError
from tests.helpers import compose_config

BAD = [
    # wrong types
    ("trainer.lr=fast", "trainer.lr='fast' is invalid; valid: a positive finite number"),
    ("trainer.epochs=1.5", "trainer.epochs=1.5 is invalid; valid: an integer >= 1"),
    ("seed=abc", "seed='abc' is invalid; valid: an integer in 0..4294967295"),
    ("trainer.resume=maybe", "trainer.resume='maybe' is invalid; valid: true or false"),
    ("data.max_train_samples=all",
     "data.max_train_samples='all' is invalid; valid: an integer >= 1 or null"),
    # out-of-range numbers
    ("trainer.epochs=0", "trainer.epochs=0 is invalid; valid: an integer >= 1"),
    ("trainer.warmup_ratio=1.0", "trainer.warmup_ratio=1.0 is invalid; valid: a number in [0, 1)"),
    ("trainer.max_grad_norm=-1", "trainer.max_grad_norm=-1 is invalid; valid: a number >= 0"),
    ("gate.momentum=1.0", "gate.momentum=1.0 is invalid; valid: a number in [0, 1)"),
    ("gate=cosine gate.temperature=0", "gate.temperature=0 is invalid; valid: a positive number"),
    ("moe.num_experts=0", "moe.num_experts=0 is invalid; valid: an integer >= 1"),
    ("seed=-1", "seed=-1 is invalid; valid: an integer in 0..4294967295"),
    ("seed=4294967296", "seed=4294967296 is invalid; valid: an integer in 0..4294967295"),
    ("seed=1.5", "seed=1.5 is invalid; valid: an integer in 0..4294967295"),
    ("trainer.lr=inf", "trainer.lr=inf is invalid; valid: a positive finite number"),
    ("trainer.lr=nan", "trainer.lr=nan is invalid; valid: a positive finite number"),
    ("trainer.lr=0", "trainer.lr=0 is invalid; valid: a positive finite number"),
    # unknown choices
    ("trainer.precision=fp8", "trainer.precision='fp8' is invalid; valid: fp32, bf16, fp16"),
    ("trainer.device=tpu", "trainer.device='tpu' is invalid; valid: auto, cpu, cuda"),
    ("moe.split=halves", "moe.split='halves' is invalid; valid: cluster, random"),
    ("gate.name=softmax", "gate='softmax' is invalid; valid: avg_k, cosine, learned"),
    ("data.ood_missing=warn", "data.ood_missing='warn' is invalid; valid: skip, error"),
    # missing files
    ("data.root=/no/such/folder", "data.root='/no/such/folder' is invalid; valid: an existing"),
    # incompatible combinations
    ("moe.top_k=65", "moe.top_k=65 is invalid; valid: 1..moe.num_experts (64)"),
    ("moe=dense gate=learned", "gate=learned needs experts to route to, but moe=dense"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[b[0] for b in BAD])
def test_bad_values_name_the_key_the_value_and_what_is_valid(overrides, message):
    with pytest.raises(UserError) as error:
        validate(compose_config(overrides.split()))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_shipped_presets_pass_and_the_same_presets_with_a_bad_value_do_not():
    for overrides in ([], ["gate=learned"], ["gate=cosine"], ["moe=dense"],
                      ["experiment=quickstart", "data.root=null"]):
        assert validate(compose_config(overrides)) is None  # no error raised
        with pytest.raises(UserError, match="trainer.epochs=0 is invalid"):
            validate(compose_config([*overrides, "trainer.epochs=0"]))


@pytest.mark.parametrize("override, message", [
    ("model=bert-huge", "model=bert-huge is unknown; valid: bert-base-cased"),
    ("task=sst3", "task=sst3 is unknown; valid: alpaca, cola"),
    ("gate=topk", "gate=topk is unknown; valid: avg_k, cosine, learned"),
])
def test_unknown_presets_are_named_with_the_valid_ones(override, message):
    assert message in check_group_choices([override])


def test_a_wrong_type_is_refused_while_composing_with_the_same_line():
    from hydra import compose, initialize_config_module

    from emoe_cli.config.schema import TrainerSchema, composition_refusal

    with initialize_config_module("emoe_cli.conf", version_base="1.3"):
        assert OmegaConf.get_type(compose("config").trainer) is TrainerSchema
        with pytest.raises(Exception) as error:  # Hydra's own exception: before validate
            compose("config", overrides=["trainer.epochs=abc"])
    assert composition_refusal(error.value) == (
        "trainer.epochs='abc' is invalid; valid: an integer >= 1")


def test_numbers_stay_as_written_so_a_run_identity_does_not_move():
    cfg = compose_config(["trainer.weight_decay=0", "moe.noise_lambda=0"])
    assert type(cfg.trainer.weight_decay) is int and type(cfg.moe.noise_lambda) is int


def test_presets_only_override_the_schema_defaults_they_pull_in():
    """A default lives once, in emoe_cli/config/schema.py: a preset that restates one is a second
    copy that would silently disagree the day the schema's changes."""
    from dataclasses import MISSING, fields
    from importlib import resources

    import yaml

    from emoe_cli.config.schema import STORED

    conf = resources.files("emoe_cli.conf")
    pulled = 0
    for path in sorted(Path(str(conf)).rglob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        for entry in data.get("defaults") or []:
            if not (isinstance(entry, str) and entry.startswith("/schema/")):
                continue
            pulled += 1
            name, _, at = entry.removeprefix("/schema/").partition("@")
            body = data if at == "_here_" else data.get(at) or {}
            for spec in fields(STORED[name]):
                default = spec.default if spec.default is not MISSING else None
                if spec.name in body:
                    assert body[spec.name] != default or type(body[spec.name]) is not type(
                        default), f"{path.name}: {spec.name}: {default!r} is the default"
    assert pulled >= 9  # trainer, data, eval, moe x2, gate x3, profile x2
