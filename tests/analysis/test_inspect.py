"""emoe-inspect: the layers × k table, its files, and its one-line errors."""

import csv
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module

from emoe_cli.analysis.conversion_table import conversion_table
from emoe_cli.analysis.conversion_view import text_table
from emoe_cli.cli.inspection import check_overrides, inspect, inspect_layers, top_ks
from emoe_cli.errors import UserError
from emoe_cli.moe import emoefy
from tests.conftest import tiny_bert


def inspect_config(overrides):
    with initialize_config_module("emoe_cli.conf", version_base="1.3"):
        return compose("inspect", overrides=check_overrides(overrides)[0])


def _converter(model, split, layers):
    emoefy(model, num_experts=8, top_k=2, layers=layers, split=split)


def test_table_shape_follows_layers_ks_and_splits():
    dense = tiny_bert()
    batch = {"input_ids": dense.dummy_inputs["input_ids"].clamp(max=99)}
    rows = conversion_table(dense, batch, _converter, layers=[0, 1, 2], configured=[1, 2],
                            top_ks=[2, 4, 8], splits=["cluster", "random"])
    assert len(rows) == 2 * 3 * (3 + 1)
    assert {(r.split, r.layers, r.top_k) for r in rows} == {
        (s, layers, k) for s in ("cluster", "random") for layers in ("0", "1", "2", "1,2")
        for k in (2, 4, 8)}
    assert [r.configured for r in rows if r.layers == "1,2"] == [True] * 6
    for r in rows:  # k = N: everything kept, nothing moved; below it, less
        if r.top_k == 8:
            assert r.kept_share == pytest.approx(1, abs=1e-6) and r.relative_l2 < 1e-6
        else:
            assert r.kept_share < 0.99 and r.relative_l2 > 1e-4
    cell = {(r.split, r.layers, r.top_k): r for r in rows}
    for split in ("cluster", "random"):  # each row converts its own blocks only
        one, two, both = (cell[split, name, 2] for name in ("1", "2", "1,2"))
        assert both.kept_share == pytest.approx((one.kept_share + two.kept_share) / 2)
        assert len({round(x.relative_l2, 6) for x in (one, two, both)}) == 3
    single = conversion_table(dense, batch, _converter, layers=[1], configured=[1],
                              top_ks=[4], splits=["cluster"])
    assert len(single) == 2 and {r.configured for r in single} == {False, True}
    lines = text_table(rows).splitlines()
    assert lines[1].split() == [word for k in (2, 4, 8) for split in ("cluster", "random")
                                for word in (f"k={k}", split)]
    assert [line.split()[0:2] for line in lines[2:6]] == [
        ["layer", "0"], ["layer", "1"], ["layer", "2"], ["moe.layers", "[1,2]"]]


@pytest.mark.slow
def test_inspect_writes_the_table_on_real_minilm(minilm2_dir, shared_data, tmp_path):
    # profile=clean: the split's own property. Under official, token dropping at capacity
    # 1.5 on these 8 sentences drops more of the clustered (more concentrated) routing, and
    # layer 0 then keeps less than random (0.07 vs 0.12 at k = 2; docs/conversion.md).
    cfg = inspect_config(["experiment=quickstart", f"data.root={shared_data}", "profile=clean",
                          f"model.name_or_path={minilm2_dir}", "data.max_train_samples=64",
                          "moe.layers=[1]", "moe.num_experts=16", "inspect.top_k=range(2,7,4)",
                          "inspect.layers=all", "inspect.batch_size=8",
                          f"moe.cluster_cache={tmp_path / 'clusters'}"])
    rows, text = inspect(cfg, tmp_path)
    assert len(rows) == 2 * 2 * (2 + 1)  # splits × k × (layers 0, 1 and moe.layers [1])
    with (tmp_path / "inspect.csv").open() as file:
        table = list(csv.DictReader(file))
    assert len(table) == len(rows) and {r["top_k"] for r in table} == {"2", "6"}
    assert (tmp_path / "inspect.png").read_bytes()[:4] == b"\x89PNG"
    assert "8 training examples" in text and "moe.layers [1]" in text
    cluster = {(r.layers, r.top_k): r.kept_share for r in rows if r.split == "cluster"}
    random = {(r.layers, r.top_k): r.kept_share for r in rows if r.split == "random"}
    assert all(random[key] < cluster[key] for key in cluster)


def test_ranges_and_comma_lists_become_lists():
    rewritten, problem = check_overrides(["inspect.top_k=range(8,33,8)", "inspect.layers=1,3",
                                          "moe.top_k=4"])
    assert problem is None
    assert rewritten == ["inspect.top_k=[8,16,24,32]", "inspect.layers=[1,3]", "moe.top_k=4"]
    assert inspect_config(["inspect.top_k=range(2,5)"]).inspect.top_k == [2, 3, 4]


@pytest.mark.parametrize("override, message", [
    ("inspect.topk=[8]", "inspect.topk is unknown; valid: inspect.top_k, inspect.layers, "
                         "inspect.batch_size, inspect.contrast"),
    ("+inspect.what=1", "inspect.what is unknown; valid: inspect.top_k"),
    ("model=nope", "model=nope is unknown; valid:"),
])
def test_unknown_keys_are_one_line(override, message):
    assert message in check_overrides([override])[1]


def test_bad_values_name_the_key_and_what_is_valid(tmp_path):
    assert top_ks(None, 16, 64) == [8, 16, 32] and top_ks(None, 4, 4) == [2, 4]
    assert top_ks([32, 8, 8], 16, 64) == [8, 32]
    with pytest.raises(UserError, match=r"inspect.top_k=\[8, 65\]: 65 is not a k for N=64; "
                                        r"valid: integers in 1..64"):
        top_ks([8, 65], 16, 64)
    with pytest.raises(UserError, match=r"inspect.top_k=abc: abc is not a k for N=64"):
        top_ks("abc", 16, 64)
    assert inspect_layers("last_2", 6) == [4, 5]
    with pytest.raises(UserError, match=r"inspect.layers=\[6\]: not blocks of this 6-layer "
                                        r"model; valid: all, even, .* in 0..5"):
        inspect_layers([6], 6)
    with pytest.raises(UserError, match="inspect.batch_size=0 is invalid; valid: an integer"):
        inspect(inspect_config(["inspect.batch_size=0"]), tmp_path)
    with pytest.raises(UserError, match="moe=dense has no experts to inspect"):
        inspect(inspect_config(["moe=dense"]), tmp_path)


def test_console_script_prints_one_line_and_exits_2(tmp_path):
    """Before Hydra (an unknown key) and inside it (a bad value, after the run folder)."""
    for override, line in [
        ("inspect.k=[8]", "emoe-inspect: error: inspect.k is unknown; valid: inspect.top_k, "
                          "inspect.layers, inspect.batch_size, inspect.contrast"),
        (f"data.root={tmp_path / 'nope'}", f"emoe-inspect: error: data.root='{tmp_path}/nope' "
                                           "is invalid; valid: an existing glue_data-style "
                                           "directory, or null for the hub")]:
        result = subprocess.run([sys.executable, "-m", "emoe_cli.cli.inspection", override],
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [line]
