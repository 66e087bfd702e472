"""Image runs end to end through `run()`: a tiny ViT on generated ImageFolder domains and on
the real digits, the conversion receipt, and the one-line user errors."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import transformers

from emoe_cli.cli.pretrain_vit import main as pretrain_main
from emoe_cli.cli.pretrain_vit import pretrain
from emoe_cli.cli.train import run
from tests.conftest import tiny_vit
from tests.data.test_images import write_image_folder
from tests.helpers import assert_one_line_error, compose_config

VLCS_DOMAINS = ["Caltech101", "LabelMe", "SUN09", "VOC2007"]


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    """A 2-block, 1-channel ViT (16 px) saved with its image processor, as a hub folder is."""
    folder = tmp_path_factory.mktemp("tiny_vit")
    tiny_vit().save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3,
                                   image_std=[0.5] * 3).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vlcs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("domainbed")
    return write_image_folder(root, "VLCS", VLCS_DOMAINS, ["bird", "car", "chair", "dog",
                                                           "person"], per_class=2)


def overrides(tmp_path, model_dir, *extra):
    return [f"model.name_or_path={model_dir}", "model.name=tiny-vit", "logger=none",
            "trainer.epochs=1", "trainer.batch_size=8", "trainer.checkpoint=false",
            f"sweep.index_dir={tmp_path / 'index'}", "moe.layers=[0,1]", "moe.num_experts=4",
            *extra]


def record(path):
    return json.loads((path / "results.json").read_text())


def test_emoe_on_image_folders_holds_one_domain_out(tmp_path, vit_dir, vlcs_root):
    cfg = compose_config(overrides(tmp_path, vit_dir, "task=vlcs", f"data.root={vlcs_root}",
                                   "task.test_env=LabelMe", "moe.top_k=4",
                                   "analysis.routing=true"))
    run(cfg, tmp_path)
    result = record(tmp_path)
    assert (result["status"], result["task"], result["method"]) == ("completed", "vlcs", "emoe")
    assert list(result["ood"]) == ["LabelMe"] and result["ood"]["LabelMe"]["num_examples"] == 10
    assert result["id"]["split"] == "validation" and result["id"]["num_examples"] == 6
    sizes = result["domains"]["sizes"]
    assert sizes["LabelMe"] == {"test": 10} and sizes["SUN09"] == {"train": 8, "validation": 2}
    # k = N: the converted model computes the dense one, on the run's own images.
    assert result["conversion_receipt"]["max_abs_diff"] < 1e-5
    kept = result["conversion_receipt"]["kept_share"]  # k = N here: all of it, nothing moves
    assert kept and all(share == pytest.approx(1, abs=1e-5) for share in kept.values())
    assert result["conversion_receipt"]["hidden_relative_l2"] < 1e-5
    routing = json.loads((tmp_path / "routing.json").read_text())
    assert set(routing["splits"]) == {"train", "id", "ood/LabelMe"}
    assert routing["splits"]["id"]["0"]["tokens"] == 6 * 17  # 16 patches + CLS per image


def test_dense_run_with_caps_and_heldout_selection(tmp_path, vit_dir, vlcs_root):
    cfg = compose_config(overrides(tmp_path, vit_dir, "task=vlcs", f"data.root={vlcs_root}",
                                   "moe=dense", "data.max_train_samples=20",
                                   "data.max_eval_samples=4", "data.selection=heldout",
                                   "data.selection_fraction=0.25"))
    run(cfg, tmp_path)
    result = record(tmp_path)
    assert result["status"] == "completed" and result["method"] == "dense"
    assert result["selection"] == "heldout"
    assert result["ood"]["Caltech101"]["num_examples"] == 4 and result["id"]["num_examples"] == 4


@pytest.mark.parametrize("extra, message", [
    (["task.test_env=9"], "task.test_env=9 is invalid; valid: 0..3 or a domain name "
                          "(Caltech101, LabelMe, SUN09, VOC2007)"),
    (["task.domains=[Caltech101,LabelMe,SUN09,VOC2012]"], "missing domain folder"),
    (["task.holdout_fraction=1.5"], "task.holdout_fraction=1.5 is invalid"),
])
def test_user_errors_are_one_line(tmp_path, vit_dir, vlcs_root, capsys, extra, message):
    cfg = compose_config(overrides(tmp_path, vit_dir, "task=vlcs", f"data.root={vlcs_root}",
                                   "moe.top_k=2", *extra))
    with pytest.raises(SystemExit) as exit_info:
        run(cfg, tmp_path)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err, message)
    assert record(tmp_path)["status"] == "failed"


def test_missing_project_vit_says_how_to_make_it(tmp_path, capsys):
    cfg = compose_config(["model=vit-digits", f"model.name_or_path={tmp_path / 'absent'}",
                          "task=digits", "logger=none", f"sweep.index_dir={tmp_path / 'i'}"])
    with pytest.raises(SystemExit) as exit_info:
        run(cfg, tmp_path)
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "no such folder; create it with: emoe-pretrain-vit")


def test_pretrained_digits_vit_runs_and_says_what_it_saw(tmp_path, shared_data):
    folder = tmp_path / "vit"
    args = SimpleNamespace(domain="sklearn", data_root=str(shared_data), out=str(folder),
                           epochs=1, batch_size=256, lr=1e-3, image_size=8, patch_size=4,
                           hidden=24, layers=3, heads=2, seed=0)
    saved = pretrain(args)
    assert saved["domain"] == "sklearn" and saved["examples"] == 1797 - 179
    assert 0 < saved["heldback_accuracy"] <= 1  # the last epoch's held-back score
    cfg = compose_config(["model=vit-digits", f"model.name_or_path={folder}", "task=digits",
                          f"data.root={shared_data}", "task.test_env=sklearn", "logger=none",
                          "trainer.epochs=1", "trainer.checkpoint=false",
                          "data.max_train_samples=32", "data.max_eval_samples=16",
                          f"sweep.index_dir={tmp_path / 'index'}"])
    run(cfg, tmp_path)
    result = record(tmp_path)
    assert result["status"] == "completed" and result["model"] == "vit-digits-pretrained-mnist"
    assert list(result["ood"]) == ["sklearn"]
    assert result["config"]["moe"]["num_experts"] == 24 and result["config"]["moe"]["top_k"] == 4
    assert result["backbone_pretraining"]["domain"] == "sklearn"
    assert result["ood_seen_in_pretraining"] is True  # the test held out what it pre-trained on


def test_pretraining_refuses_zero_epochs_by_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrain_main(["--epochs", "0"])
    assert_one_line_error(exit_info.value.code, capsys.readouterr().err,
                          "--epochs=0 is invalid; valid: a whole number of at least 1",
                          "emoe-pretrain-vit")


def test_domainbed_pipeline_augments_training_rows_and_batches_by_domain(tmp_path, vit_dir,
                                                                       vlcs_root):
    from emoe_cli.models.drop_path import DropPath
    from emoe_cli.workloads.image import image_workload

    cfg = compose_config(overrides(tmp_path, vit_dir, "task=vlcs", f"data.root={vlcs_root}",
                                   "task.pipeline=domainbed", "task.batch_per_domain=true"))
    workload = image_workload(cfg, str(vit_dir))
    train, validation = workload.data.train, workload.data.validation
    assert sorted(set(workload.train_groups)) == [1, 2, 3]  # held out: Caltech101 (0)
    assert len(workload.train_groups) == len(train) == 24
    assert any(not np.array_equal(train[0]["pixels"], train[0]["pixels"]) for _ in range(5))
    assert np.array_equal(validation[0]["pixels"], validation[0]["pixels"])
    assert np.asarray(train[0]["pixels"]).shape == (1, 16, 16)
    assert not any(isinstance(m, DropPath) for m in workload.load_model(str(vit_dir)).modules())
    cfg = compose_config(overrides(tmp_path, vit_dir, "task=vlcs", f"data.root={vlcs_root}",
                                   "+model.drop_path_rate=0.1"))
    model = image_workload(cfg, str(vit_dir)).load_model(str(vit_dir))
    assert [m.rate for m in model.modules() if isinstance(m, DropPath)] == [0.0, 0.1]


def test_a_domainbed_run_evaluates_every_n_steps(tmp_path, vit_dir, vlcs_root):
    cfg = compose_config(overrides(tmp_path, vit_dir, "task=vlcs", f"data.root={vlcs_root}",
                                   "method=dense", "task.pipeline=domainbed",
                                   "task.batch_per_domain=true", "trainer.batch_size=2",
                                   "trainer.optimizer=adam", "trainer.lr_scheduler=constant",
                                   "trainer.max_steps=5", "trainer.eval_every_steps=2"))
    run(cfg, tmp_path)
    result = record(tmp_path)
    assert result["status"] == "completed"
    assert [entry["step"] for entry in result["epochs"]] == [2, 4, 5]
    assert result["epochs"][-1]["epoch"] == 2  # 8 rows in each domain / 2 a batch = 4 steps


def test_an_unknown_pipeline_names_the_valid_ones(tmp_path, vit_dir, vlcs_root):
    from emoe_cli.errors import UserError
    from emoe_cli.workloads.image import check_image_task

    cfg = compose_config(["task=vlcs", "task.pipeline=timm"])
    with pytest.raises(UserError, match="task.pipeline='timm' is invalid; valid: processor, "
                                        "domainbed"):
        check_image_task(cfg.task)
