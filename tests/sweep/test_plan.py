"""Grid presets and `emoe-grid`: counts, contents, and that the planned jobs compose."""

import pytest
from omegaconf import OmegaConf

from emoe_cli.sweep.grid_cli import completed, main, split_fixed
from emoe_cli.sweep.identity import run_identity
from emoe_cli.sweep.index import add_completed
from emoe_cli.sweep.plan import job_config, planned_runs
from emoe_cli.tracking.records import write_json_atomic
from tests.helpers import assert_one_line_error

# Hand counts of the grids that mirror the paper's tables (docs/protocols.md "The paper's grids"):
# tasks × methods × (other axes) × learning rates × seeds.
PAPER = {
    "glue_bert_base": 8 * 5 * 3 * 3,              # full fine-tuning: 5 methods
    "glue_bert_large": 8 * 5 * 3 * 3,
    "glue_gpt2": 8 * 5 * 3 * 3,
    "lora_bert_large": 8 * 5 * 3 * 3,             # LoRA: 5 methods
    "lora_gpt2_xl": 8 * 5 * 3 * 3,
    "domainbed_vit_s": 4 * 4 * 4 * 3,             # sets × methods × held-out domains × trials
    "domainbed_vit_b": 4 * 3 * 4 * 3,
    "ablation_experts_lora_n16": 3 * 2 * 3 * 3 * 3,   # tasks × methods × k × lr × seeds
    "ablation_experts_lora_n32": 3 * 2 * 3 * 3 * 3,
    "ablation_data": 5 * 2 * 8 * 3 * 3,           # shares × methods × tasks × lr × seeds
}
EXTRA = {"ablation_experts_n16": 3 * 5 * 3 * 3, "ablation_experts_n32": 3 * 5 * 3 * 3,
         "ablation_layers": 3 * 5 * 3 * 3, "ablation_ingredients": 11 * 5}
FULL = ["dense", "noisy", "gmoe", "emoe", "emoe_learn"]
LORA = ["lora", "lora_block", "lora_gmoe", "lora_emoe", "lora_emoe_learn"]
METHODS = {"glue_bert_base": FULL, "glue_bert_large": FULL, "glue_gpt2": FULL,
           "lora_bert_large": LORA, "lora_gpt2_xl": LORA,
           "domainbed_vit_s": ["dense", "gmoe", "emoe", "emoe_learn"],
           "domainbed_vit_b": ["dense", "gmoe", "emoe"],
           "ablation_experts_lora_n16": ["lora_emoe", "lora_emoe_learn"],
           "ablation_experts_lora_n32": ["lora_emoe", "lora_emoe_learn"],
           "ablation_data": ["dense", "emoe"]}
COMPOSABLE = [name for name in {**PAPER, **EXTRA} if not name.startswith("domainbed")]


def test_all_prints_the_papers_total_apart_from_the_extra_grids(capsys):
    main(["--all"])
    lines = capsys.readouterr().out.splitlines()
    paper_end = next(i for i, line in enumerate(lines) if line.startswith("paper total"))
    rows = {line.split()[0]: int(line.split()[1]) for line in lines
            if line.startswith("  ")}
    paper = {name for line in lines[:paper_end] if line.startswith("  ")
             for name in [line.split()[0]]}
    assert paper == set(PAPER) and rows == {**PAPER, **EXTRA}
    assert lines[paper_end].split() == ["paper", "total", str(sum(PAPER.values()))]
    assert lines[-1].split() == ["extra", "total", str(sum(EXTRA.values()))]
    assert sum(PAPER.values()) == 3180


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_each_paper_grid_cites_its_table_and_sweeps_its_methods(preset):
    jobs = planned_runs([f"experiment={preset}"])
    assert len({tuple(job) for job in jobs}) == PAPER[preset]
    methods = [o.split("=", 1)[1] for o in jobs[0] + jobs[-1] if o.startswith("method=")]
    every = {o.split("=", 1)[1] for job in jobs for o in job if o.startswith("method=")}
    assert every == set(METHODS[preset]) and methods
    cfg = job_config(jobs[0])
    assert cfg.sweep.paper is True
    assert any(word in cfg.sweep.source for word in ("Table", "table", "Figure"))


def test_glue_grid_is_the_full_product_of_its_axes():
    jobs = planned_runs(["experiment=glue_bert_base"])
    assert len({tuple(job) for job in jobs}) == 360
    values = {key: {o.split("=", 1)[1] for job in jobs for o in job if o.startswith(key + "=")}
              for key in ("task", "method", "trainer.lr", "seed")}
    assert values["method"] == set(FULL) and len(values["task"]) == 8
    assert {float(v) for v in values["trainer.lr"]} == {2e-5, 3e-5, 5e-5}
    assert values["seed"] == {"0", "1", "2"}


def test_command_line_values_narrow_a_preset():
    jobs = planned_runs(["experiment=glue_bert_base", "task=rte,cola", "seed=0"])
    assert len(jobs) == 2 * 5 * 3
    assert all("seed=0" in job for job in jobs)


@pytest.mark.parametrize("preset", COMPOSABLE)
def test_first_and_last_jobs_compose(preset):
    jobs = planned_runs([f"experiment={preset}"])
    for job in (jobs[0], jobs[-1]):
        cfg = job_config(job)
        assert OmegaConf.to_container(cfg, resolve=True)
        assert cfg.model.name in ("bert-base-cased", "bert-large-cased", "gpt2", "gpt2-xl",
                                  "minilm")  # minilm: the ingredient ablation (laptop scale)


def test_paper_settings_reach_the_job_configs():
    mnli = job_config(["experiment=glue_bert_base", "task=mnli", "method=gmoe", "seed=1"])
    assert (mnli.trainer.epochs, mnli.gate.name, mnli.moe.enabled) == (3, "cosine", True)
    rte = job_config(["experiment=glue_bert_base", "task=rte", "method=dense"])
    assert (rte.trainer.epochs, rte.moe.enabled) == (10, False)
    n16 = job_config(planned_runs(["experiment=ablation_experts_n16"])[0])
    assert (n16.moe.num_experts, n16.moe.top_k, n16.gate.name) == (16, 2, "avg_k")
    shares = {job_config(job).data.train_fraction
              for job in planned_runs(["experiment=ablation_data", "task=rte", "seed=0",
                                       "trainer.lr=2e-5", "method=emoe"])}
    assert shares == {0.5, 0.6, 0.7, 0.8, 0.9}
    nk = job_config(planned_runs(["experiment=ablation_experts_lora_n32"])[-1])
    assert (nk.moe.num_experts, nk.moe.top_k, nk.lora.mode, nk.model.name) == (
        32, 16, "standard", "bert-large-cased")


def test_status_marks_runs_already_completed(tmp_path, capsys):
    job = ["experiment=quickstart", "seed=0", f"sweep.index_dir={tmp_path}"]
    cfg = job_config(job)
    identity = run_identity(OmegaConf.to_container(cfg, resolve=True),
                            cfg.sweep.identity_ignore)
    results = tmp_path / "run" / "results.json"
    write_json_atomic(results, {"status": "completed", "identity": identity})
    add_completed(tmp_path, identity, results)
    assert completed(job) and not completed([*job[:1], "seed=1", job[2]])
    main(["--status", *job[:1], "seed=0,1", job[2]])
    out = capsys.readouterr().out
    assert "2 runs (1 already completed, 1 to run)" in out


def test_split_fixed_and_bad_preset(capsys):
    fixed, varying = split_fixed([["a=1", "b=1"], ["a=1", "b=2"]])
    assert fixed == ["a=1"] and varying == [["b=1"], ["b=2"]]
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment=nope"])
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "experiment=nope is unknown", "emoe-grid")


def test_reindex_from_the_command_line(tmp_path, capsys):
    write_json_atomic(tmp_path / "old" / "3" / "results.json",
                      {"status": "completed", "identity": "feed"})
    main(["--reindex", str(tmp_path / "old"), "--", f"sweep.index_dir={tmp_path}/idx"])
    assert "1 completed runs indexed" in capsys.readouterr().out
    assert (tmp_path / "idx" / "feed.json").exists()


@pytest.mark.parametrize("preset, model, last_method", [
    ("domainbed_vit_s", "deit-small", "emoe_learn"), ("domainbed_vit_b", "deit-base", "emoe")])
def test_vision_grid_jobs_compose_and_validate(preset, model, last_method):
    from emoe_cli.config.checks import validate
    from emoe_cli.experiment.method import method_name
    from emoe_cli.workloads.image import check_image_task

    jobs = planned_runs([f"experiment={preset}"])
    for job in (jobs[0], jobs[-1]):
        cfg = job_config(job)
        validate(cfg)
        check_image_task(cfg.task)
        assert (cfg.model.name, cfg.task.kind) == (model, "image")
        assert cfg.trainer.max_steps == 5000 and cfg.trainer.eval_every_steps == 300
    last = job_config(jobs[-1])
    assert (last.task.name, last.task.test_env, method_name(last)) == ("terraincognita", 3,
                                                                        last_method)
    assert (last.moe.num_experts, last.moe.top_k, list(last.moe.layers)) == (24, 4, [8, 10])
    assert job_config(jobs[0]).moe.enabled is False
