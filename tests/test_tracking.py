import sys
import types

from hydra.types import RunMode
from omegaconf import OmegaConf

from emoe_cli import tracking


def hydra_cfg(mode, output_dir, experiment=None):
    return OmegaConf.create({"mode": mode, "runtime": {"output_dir": str(output_dir),
                                                       "choices": {"experiment": experiment}}})


def test_multirun_jobs_are_grouped_by_their_sweep_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = tmp_path / "outputs" / "multirun" / "2026-01-02" / "03-04-05" / "7"
    assert tracking.sweep_group(hydra_cfg(RunMode.MULTIRUN, job)) == (
        "outputs/multirun/2026-01-02/03-04-05")
    elsewhere = tmp_path.parent / "scratch" / "sweep" / "0"
    assert tracking.sweep_group(hydra_cfg(RunMode.MULTIRUN, elsewhere)) == str(
        elsewhere.parent.resolve())
    assert tracking.sweep_group(hydra_cfg(RunMode.RUN, job)) is None
    assert tracking.sweep_group(None) is None


def test_wandb_run_gets_group_and_tags(tmp_path, monkeypatch):
    calls = {}
    fake = types.SimpleNamespace(init=lambda **kwargs: calls.update(kwargs))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking, "current_hydra", lambda: hydra_cfg(
        RunMode.MULTIRUN, tmp_path / "sweeps" / "a" / "3", "glue_bert_base"))
    logger = OmegaConf.create({"name": "wandb", "project": "emoe", "entity": None,
                               "mode": "offline", "group": None, "tags": ["extra"]})
    tracking.WandbTracker(logger, {}, "rte-bert-emoe-s0", ["rte", "emoe", "bert"], "out")
    assert calls["group"] == "sweeps/a" and calls["mode"] == "offline"
    assert calls["tags"] == ["rte", "emoe", "bert", "experiment:glue_bert_base", "extra"]
    logger.group = "mine"  # an explicit group wins
    tracking.WandbTracker(logger, {}, "n", [], "out")
    assert calls["group"] == "mine"
