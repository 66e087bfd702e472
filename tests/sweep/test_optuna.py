"""The Optuna preset: it composes as documented, and a tiny real study tunes trainer.lr on the
selection score, with a failed trial recorded and the study carried on."""

import json
import math
import sys

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from emoe_cli.cli import train
from emoe_cli.sweep.objective import sweep_objective

SENTENCES = ["a fine film", "a dull film", "great acting", "poor acting", "loved it",
             "hated it", "truly moving", "badly paced"]


def test_preset_maximises_over_a_log_uniform_lr_covering_the_paper_grid():
    with initialize_config_module("emoe_cli.conf", version_base="1.3"):
        cfg = compose("config", ["hparams_search=optuna_lr", "seed=7"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert sweeper.direction == "maximize" and sweeper.sampler.seed == 7
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert list(sweeper.params) == ["trainer.lr"]
    space = OverridesParser.create().parse_override(f"trainer.lr={sweeper.params['trainer.lr']}")
    interval = space.value()
    assert "log" in interval.tags and interval.start < 2e-5 and 5e-5 < interval.end <= 1e-3


def test_the_objective_is_the_selection_score_and_a_failed_run_has_none():
    heldout = {"status": "completed", "selection_score": 0.7, "id": {"score": 0.9}}
    assert sweep_objective(heldout) == 0.7  # dev only reports under data.selection=heldout
    assert sweep_objective({"status": "completed", "id": {"score": 0.6}}) == 0.6
    assert sweep_objective({"status": "failed", "selection_score": 0.7}) is None
    assert sweep_objective({"status": "completed", "selection_score": math.nan}) is None


@pytest.mark.slow
def test_a_tiny_study_tunes_lr_and_survives_a_failed_trial(minilm2_dir, tmp_path, monkeypatch,
                                                           capsys):
    rows = [(text, 5 if i % 2 == 0 else 1) for i, text in enumerate(SENTENCES)]
    for split, copies in (("train", 2), ("dev", 1)):
        (tmp_path / f"{split}.csv").write_text(
            "review,stars\n" + "".join(f"{t},{s}\n" for t, s in rows * copies))
    real, calls = train.run_experiment, []

    def first_trial_diverges(cfg, *args, **kwargs):
        calls.append(cfg.trainer.lr)
        if len(calls) == 1:
            raise RuntimeError("diverged")
        result = real(cfg, *args, **kwargs)
        args[0].id["score"] = -1.0  # the record's ID score, made unlike its selection score
        return result               # (equal under dev selection): the study must not see it

    monkeypatch.setattr(train, "run_experiment", first_trial_diverges)
    sweep_dir = tmp_path / "study"
    monkeypatch.setattr(sys, "argv", [
        "emoe-run", "hparams_search=optuna_lr", "hydra.sweeper.n_trials=3", "task=custom_example",
        "task.ood=[]", f"task.files.train={tmp_path / 'train.csv'}",
        f"task.files.validation={tmp_path / 'dev.csv'}", "logger=none",
        f"model.name_or_path={minilm2_dir}", "moe.layers=[0,1]", "moe.num_experts=16",
        "moe.top_k=4", "data.root=null", "trainer.batch_size=8", "trainer.epochs=1",
        "trainer.checkpoint=false", f"sweep.index_dir={tmp_path / 'index'}",
        f"hydra.sweep.dir={sweep_dir}", "hydra/job_logging=disabled"])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as ended:  # the tally's exit 1: one run failed
        train.main()
    assert ended.value.code == 1
    records = [json.loads((sweep_dir / f"{n}_emoe" / "results.json").read_text())
               for n in range(3)]
    assert [r["status"] for r in records] == ["failed", "completed", "completed"]
    lrs = [r["config"]["trainer"]["lr"] for r in records]
    assert lrs == calls and len(set(lrs)) == 3 and all(1e-5 <= lr <= 1e-4 for lr in lrs)
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    completed = records[1:]
    top = max(completed, key=lambda r: r["selection_score"])
    assert top["id"]["score"] == -1.0 != top["selection_score"]
    assert best["best_value"] == pytest.approx(top["selection_score"])
    assert best["best_params"]["trainer.lr"] == pytest.approx(top["config"]["trainer"]["lr"])
