from omegaconf import OmegaConf

from emoe_cli.sweep.identity import run_identity, without_keys
from tests.helpers import compose_config

IGNORE = ["sweep", "logger", "data.root", "trainer.num_workers", "trainer.eval_batch_size"]


def identity_of(overrides):
    cfg = compose_config(["experiment=quickstart", *overrides])
    return run_identity(OmegaConf.to_container(cfg, resolve=True), cfg.sweep.identity_ignore)


def test_identity_ignores_where_things_are_written_and_logged():
    base = identity_of([])
    assert identity_of(["data.root=/elsewhere", "logger=none", "trainer.num_workers=4",
                        "sweep.index_dir=/tmp/idx", "trainer.eval_batch_size=7"]) == base


def test_identity_changes_with_anything_that_changes_results():
    base = identity_of([])
    changed = [identity_of([o]) for o in ["seed=1", "trainer.lr=3e-5", "moe=dense",
                                          "gate=learned", "moe.top_k=8",
                                          "data.max_train_samples=10"]]
    assert base not in changed and len(set(changed)) == len(changed)


def test_identity_does_not_depend_on_key_order():
    a = {"trainer": {"lr": 1e-5, "epochs": 3}, "seed": 0, "logger": {"name": "wandb"}}
    b = {"seed": 0, "logger": {"name": "none"}, "trainer": {"epochs": 3, "lr": 1e-5}}
    assert run_identity(a, IGNORE) == run_identity(b, IGNORE)
    assert run_identity(a) != run_identity(b)  # nothing ignored: the loggers differ


def test_without_keys_leaves_the_input_alone_and_skips_absent_keys():
    config = {"data": {"root": "/x", "max_train_samples": 5}, "seed": 1}
    assert without_keys(config, ["data.root", "no.such.key", "seed.nested"]) == {
        "data": {"max_train_samples": 5}, "seed": 1}
    assert config["data"]["root"] == "/x"
