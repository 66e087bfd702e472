"""Grid presets and `emoe-grid`: counts, contents, and that the planned jobs compose."""

import pytest
from omegaconf import OmegaConf

from emoe_cli.records import write_json_atomic
from emoe_cli.sweep.grid_cli import completed, main, split_fixed
from emoe_cli.sweep.identity import run_identity
from emoe_cli.sweep.index import add_completed
from emoe_cli.sweep.plan import job_config, planned_runs
from tests.helpers import assert_one_line_error

# The README's breakdown of the paper's 1785 runs.
BREAKDOWN = {"glue_bert_base": 216, "glue_bert_large": 216, "glue_gpt2": 216,
             "lora_bert_large": 216, "lora_gpt2_xl": 216, "domainbed_vit_s": 144,
             "domainbed_vit_b": 144, "ablation_experts_n16": 135, "ablation_experts_n32": 135,
             "ablation_layers": 135, "ablation_data": 12}
COMPOSABLE = ["glue_bert_base", "glue_bert_large", "glue_gpt2", "ablation_experts_n16",
              "ablation_experts_n32", "ablation_layers", "ablation_data"]


def test_presets_total_the_papers_1785_runs(capsys):
    main(["--all"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split() == ["total", "1785"]
    assert {line.split()[0]: int(line.split()[1]) for line in lines[:-1]} == BREAKDOWN


def test_glue_grid_is_the_full_product_of_its_axes():
    jobs = planned_runs(["experiment=glue_bert_base"])
    assert len({tuple(job) for job in jobs}) == 216
    values = {key: {o.split("=", 1)[1] for job in jobs for o in job if o.startswith(key + "=")}
              for key in ("task", "method", "trainer.lr", "seed")}
    assert values["method"] == {"dense", "gmoe", "emoe"} and len(values["task"]) == 8
    assert {float(v) for v in values["trainer.lr"]} == {2e-5, 3e-5, 5e-5}
    assert values["seed"] == {"0", "1", "2"}


def test_command_line_values_narrow_a_preset():
    jobs = planned_runs(["experiment=glue_bert_base", "task=rte,cola", "seed=0"])
    assert len(jobs) == 2 * 3 * 3
    assert all("seed=0" in job for job in jobs)


@pytest.mark.parametrize("preset", COMPOSABLE)
def test_first_and_last_jobs_compose(preset):
    jobs = planned_runs([f"experiment={preset}"])
    for job in (jobs[0], jobs[-1]):
        cfg = job_config(job)
        assert OmegaConf.to_container(cfg, resolve=True)
        assert cfg.model.name in ("bert-base-cased", "bert-large-cased", "gpt2")


def test_paper_settings_reach_the_job_configs():
    mnli = job_config(["experiment=glue_bert_base", "task=mnli", "method=gmoe", "seed=1"])
    assert (mnli.trainer.epochs, mnli.gate.name, mnli.moe.enabled) == (3, "cosine", True)
    rte = job_config(["experiment=glue_bert_base", "task=rte", "method=dense"])
    assert (rte.trainer.epochs, rte.moe.enabled) == (10, False)
    n16 = job_config(planned_runs(["experiment=ablation_experts_n16"])[0])
    assert (n16.moe.num_experts, n16.moe.top_k, n16.gate.name) == (16, 2, "avg_k")
    data = job_config(planned_runs(["experiment=ablation_data"])[0])
    assert data.data.train_fraction == 0.8


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


@pytest.mark.parametrize("preset, model", [("domainbed_vit_s", "vit-s16"),
                                           ("domainbed_vit_b", "vit-b16")])
def test_vision_grid_jobs_compose_and_validate(preset, model):
    from emoe_cli.config import validate
    from emoe_cli.method import method_name
    from emoe_cli.workloads.image import check_image_task

    jobs = planned_runs([f"experiment={preset}"])
    for job in (jobs[0], jobs[-1]):
        cfg = job_config(job)
        validate(cfg)
        check_image_task(cfg.task)
        assert (cfg.model.name, cfg.task.kind) == (model, "image")
        assert cfg.trainer.max_steps == 5000 and cfg.trainer.lr == 5e-5
    last = job_config(jobs[-1])
    assert (last.task.name, last.task.test_env, method_name(last)) == ("terraincognita", 3,
                                                                        "emoe")
    assert (last.moe.num_experts, last.moe.top_k, list(last.moe.layers)) == (24, 4, [8, 10])
    assert last.gate.name == "avg_k" and job_config(jobs[0]).moe.enabled is False
