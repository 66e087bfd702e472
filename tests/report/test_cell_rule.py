"""A report cell pools runs that differ in seed and learning rate only: other settings split
the row (and the row says what differs), reruns of one seed count once, skipped jobs are
followed to the run they stand for, and paired differences use seeds both sides have."""

import json
import os

import pytest

from emoe_cli.report import tables
from emoe_cli.report.cli import build_report
from emoe_cli.report.runs import load_runs
from emoe_cli.sweep.identity import run_identity
from emoe_cli.sweep.tally import skipped_marker
from emoe_cli.tracking.records import write_json_atomic

IGNORE = ["sweep", "logger", "data.root"]


def config(method, lr, seed, **changes):
    """A trimmed resolved config; `changes` are dotted keys with `__` for dots."""
    cfg = {"seed": seed, "data": {"root": "/data", "max_train_samples": None},
           "model": {"name": "bert"}, "task": {"name": "rte"},
           "moe": {"enabled": method != "dense", "num_experts": 16, "top_k": 4, "layers": [10, 11]},
           "trainer": {"lr": lr, "epochs": 3},
           "sweep": {"index_dir": "outputs/index", "identity_ignore": IGNORE},
           "logger": {"name": "wandb"}}
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = value
    return cfg


def write(folder, method, lr, seed, score, ood=0.5, **changes):
    cfg = config(method, lr, seed, **changes)
    record = {"status": "completed", "task": "rte", "model": "bert", "method": method,
              "seed": seed, "identity": run_identity(cfg, IGNORE), "config": cfg,
              "id": {"score": score}, "ood": {"x": {"score": ood}}}
    write_json_atomic(folder / "results.json", record)
    return folder / "results.json"


def rows(table, method):
    return table[table["method"] == method].sort_values("variant")


def test_runs_that_differ_in_top_k_make_two_rows_labelled_by_the_key(tmp_path):
    for seed in (0, 1):
        write(tmp_path / f"k4_{seed}", "emoe", 2e-5, seed, 0.60 + seed / 100)
        write(tmp_path / f"k8_{seed}", "emoe", 2e-5, seed, 0.70 + seed / 100, moe__top_k=8)
    table = tables.cells(load_runs([tmp_path]))
    emoe = rows(table, "emoe")
    assert list(emoe["variant"]) == ["moe.top_k=4", "moe.top_k=8"]
    assert list(emoe["n"]) == [2, 2]
    assert list(emoe["id_mean"]) == pytest.approx([0.605, 0.705])
    markdown = build_report([str(tmp_path)], tmp_path / "report", resamples=200)
    assert "emoe (moe.top_k=4)" in markdown and "emoe (moe.top_k=8)" in markdown


def test_several_differing_keys_and_a_learning_rate_grid(tmp_path):
    # the rate grid pools (best rate chosen per cell); train-set size and layers split
    for lr, score in [(1e-5, 0.5), (2e-5, 0.6)]:
        write(tmp_path / f"a{lr}", "emoe", lr, 0, score)
        write(tmp_path / f"b{lr}", "emoe", lr, 0, score + 0.1, data__max_train_samples=100)
        write(tmp_path / f"c{lr}", "emoe", lr, 0, score + 0.2, moe__layers=[11])
    emoe = rows(tables.cells(load_runs([tmp_path])), "emoe")
    assert len(emoe) == 3 and list(emoe["lrs"]) == [2, 2, 2] and list(emoe["lr"]) == [2e-5] * 3
    labels = list(emoe["variant"])
    assert "data.max_train_samples=100, moe.layers=[10, 11]" in labels
    assert "data.max_train_samples=null, moe.layers=[11]" in labels


def test_keys_outside_the_identity_do_not_split(tmp_path):
    write(tmp_path / "a", "emoe", 2e-5, 0, 0.6)
    write(tmp_path / "b", "emoe", 2e-5, 1, 0.7, data__root="/elsewhere", logger__name="none")
    emoe = rows(tables.cells(load_runs([tmp_path])), "emoe")
    assert list(emoe["variant"]) == [""] and list(emoe["n"]) == [2]


def test_a_seed_run_twice_counts_once_and_the_newest_is_kept(tmp_path):
    old = write(tmp_path / "old", "emoe", 2e-5, 0, 0.50)
    new = write(tmp_path / "new", "emoe", 2e-5, 0, 0.80)
    os.utime(old, (1_000_000, 1_000_000))
    write(tmp_path / "copy", "emoe", 2e-5, 0, 0.50)
    os.utime(tmp_path / "copy" / "results.json", (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    runs = load_runs([tmp_path])
    assert len(runs) == 1 and runs.iloc[0]["id"] == 0.80
    row = rows(tables.cells(runs), "emoe").iloc[0]
    assert row["n"] == 1 and row["id_mean"] == 0.80


def test_a_skipped_job_is_followed_to_its_run_and_counted_once(tmp_path):
    earlier = write(tmp_path / "first_sweep" / "0", "emoe", 2e-5, 0, 0.6)
    write(tmp_path / "relaunch" / "1", "emoe", 2e-5, 1, 0.7)
    skipped_marker(tmp_path / "relaunch" / "0", earlier)
    alone = load_runs([tmp_path / "relaunch"])
    assert sorted(alone["seed"]) == [0, 1]
    both = load_runs([tmp_path / "relaunch", tmp_path / "first_sweep"])
    assert sorted(both["seed"]) == [0, 1]


def test_a_skip_marker_pointing_nowhere_is_one_warning(tmp_path, caplog):
    write(tmp_path / "1", "emoe", 2e-5, 1, 0.7)
    skipped_marker(tmp_path / "0", tmp_path / "gone" / "results.json")
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "skipped.json").write_text("[1, 2]")
    runs = load_runs([tmp_path])
    assert list(runs["seed"]) == [1]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert any("gone" in w for w in warnings) and any("2/skipped.json" in w for w in warnings)


def test_pairs_use_the_seeds_both_sides_have_and_say_how_many(tmp_path):
    for seed in (0, 1, 2):
        write(tmp_path / f"d{seed}", "dense", 2e-5, seed, 0.60)
    for seed in (1, 2, 3):
        write(tmp_path / f"e{seed}", "emoe", 2e-5, seed, 0.70 + (seed == 3))
    paired = tables.paired(load_runs([tmp_path]), resamples=200)
    row = paired.iloc[0]
    assert (row["pairs"], row["n_method"], row["n_dense"]) == (2, 3, 3)
    assert row["id_diff"] == pytest.approx(0.10)  # seed 3 (no dense twin) is left out


def test_each_variant_pairs_with_the_dense_run_of_its_own_setting(tmp_path):
    # emoe splits on train-set size and k, dense on train-set size only
    for n, dense, emoe in [(100, 0.5, 0.6), (1000, 0.7, 0.75)]:
        write(tmp_path / f"d{n}", "dense", 2e-5, 0, dense, data__max_train_samples=n)
        for k in (4, 8):
            write(tmp_path / f"e{n}_{k}", "emoe", 2e-5, 0, emoe + k / 1000,
                  data__max_train_samples=n, moe__top_k=k)
    runs = load_runs([tmp_path])
    paired = tables.paired(runs, resamples=200).sort_values("variant")
    assert list(paired["variant"]) == [
        f"data.max_train_samples={n}, moe.top_k={k}" for n in (100, 1000) for k in (4, 8)]
    assert list(paired["id_diff"]) == pytest.approx([0.104, 0.108, 0.054, 0.058])
    assert list(paired["pairs"]) == [1, 1, 1, 1]
    cells = tables.cells(runs)
    assert len(cells) == 6 and cells["step_vs_dense"].isna().all()  # no join blow-up


def test_variants_of_one_method_pair_with_a_dense_that_has_none(tmp_path):
    write(tmp_path / "d", "dense", 2e-5, 0, 0.5)
    write(tmp_path / "e4", "emoe", 2e-5, 0, 0.6)
    write(tmp_path / "e8", "emoe", 2e-5, 0, 0.7, moe__top_k=8)
    paired = tables.paired(load_runs([tmp_path]), resamples=200).sort_values("variant")
    assert list(paired["id_diff"]) == pytest.approx([0.1, 0.2])


def test_runs_csv_names_each_runs_variant(tmp_path):
    write(tmp_path / "a", "emoe", 2e-5, 0, 0.6)
    write(tmp_path / "b", "emoe", 2e-5, 0, 0.7, moe__top_k=8)
    build_report([str(tmp_path)], tmp_path / "report", resamples=200)
    header, *lines = (tmp_path / "report" / "runs.csv").read_text().splitlines()
    assert "variant" in header.split(",")
    assert any("moe.top_k=8" in line for line in lines)
    assert json.loads((tmp_path / "a" / "results.json").read_text())["seed"] == 0
