import json

from emoe_cli.sweep.index import add_completed, find_completed, reindex
from emoe_cli.tracking.records import write_json_atomic


def write_run(folder, identity, status="completed"):
    path = folder / "results.json"
    write_json_atomic(path, {"status": status, "identity": identity, "id": {"score": 0.5}})
    return path


def test_a_completed_run_is_found_wherever_it_was_written(tmp_path):
    results = write_run(tmp_path / "somewhere" / "run3", "abc")
    add_completed(tmp_path / "index", "abc", results)
    assert find_completed(tmp_path / "index", "abc") == results.resolve()
    assert find_completed(tmp_path / "index", "other") is None


def test_deleted_or_failed_runs_are_not_completed(tmp_path):
    results = write_run(tmp_path / "run", "abc")
    add_completed(tmp_path / "index", "abc", results)
    write_run(tmp_path / "run", "abc", status="failed")  # the folder was reused by a failure
    assert find_completed(tmp_path / "index", "abc") is None
    results.unlink()
    assert find_completed(tmp_path / "index", "abc") is None


def test_index_entry_for_a_different_identity_does_not_count(tmp_path):
    results = write_run(tmp_path / "run", "xyz")
    add_completed(tmp_path / "index", "abc", results)
    assert find_completed(tmp_path / "index", "abc") is None


def test_reindex_picks_up_completed_runs_copied_from_elsewhere(tmp_path):
    write_run(tmp_path / "cluster" / "a", "one")
    write_run(tmp_path / "cluster" / "b", "two", status="failed")
    (tmp_path / "cluster" / "c").mkdir()
    (tmp_path / "cluster" / "c" / "results.json").write_text("{not json")
    assert reindex(tmp_path / "index", [tmp_path / "cluster"]) == 1
    assert find_completed(tmp_path / "index", "one") is not None
    assert find_completed(tmp_path / "index", "two") is None
    entry = json.loads((tmp_path / "index" / "one.json").read_text())
    assert entry["results"].endswith("cluster/a/results.json")


def test_tally_counts_each_job_folder_once(tmp_path):
    from emoe_cli.sweep.tally import skipped_marker, tally

    write_run(tmp_path / "0", "a")
    (tmp_path / "0" / ".hydra").mkdir()
    write_run(tmp_path / "1", "b", status="failed")
    skipped_marker(tmp_path / "2", tmp_path / "0" / "results.json")
    (tmp_path / "3" / ".hydra").mkdir(parents=True)  # killed before writing anything
    assert tally(tmp_path) == {"completed": 1, "failed": 1, "skipped": 1, "no record": 1}


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_an_index_entry_without_results_is_ignored_with_one_line(tmp_path, caplog):
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "abc.json").write_text('{"identity": "abc"}')
    (tmp_path / "index" / "lst.json").write_text('["abc"]')
    assert find_completed(tmp_path / "index", "abc") is None
    assert find_completed(tmp_path / "index", "lst") is None
    lines = warnings_of(caplog)
    assert len(lines) == 2 and all("--reindex" in line for line in lines)
    assert "index/abc.json" in lines[0] and "results" in lines[0]
    assert "index/lst.json" in lines[1] and "not a JSON object" in lines[1]


def test_a_results_file_that_is_not_an_object_is_not_completed(tmp_path, caplog):
    from emoe_cli.sweep.tally import tally

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("[1, 2]")
    add_completed(tmp_path / "index", "abc", tmp_path / "run" / "results.json")
    assert find_completed(tmp_path / "index", "abc") is None
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "results.json").write_text("3.5")
    write_run(tmp_path / "ok", "good")
    assert reindex(tmp_path / "index2", [tmp_path]) == 1
    assert tally(tmp_path) == {"completed": 1, "failed": 0, "skipped": 0, "no record": 2}
    lines = warnings_of(caplog)
    assert lines and all("not a JSON object" in line for line in lines)
    assert all(("run/results.json" in line) or ("n/results.json" in line) for line in lines)


def test_emoe_grid_status_and_reindex_survive_bad_files(tmp_path, monkeypatch, capsys, caplog):
    from omegaconf import OmegaConf

    from emoe_cli.sweep.grid_cli import main
    from emoe_cli.sweep.identity import run_identity
    from emoe_cli.sweep.plan import job_config

    monkeypatch.chdir(tmp_path)
    cfg = job_config(["seed=0"])
    identity = run_identity(OmegaConf.to_container(cfg, resolve=True), cfg.sweep.identity_ignore)
    (tmp_path / "outputs" / "index").mkdir(parents=True)
    (tmp_path / "outputs" / "index" / f"{identity}.json").write_text('{"identity": "x"}')
    main(["--status", "seed=0"])
    out = capsys.readouterr()
    assert "0 already completed, 1 to run" in out.out
    assert [f"{identity}.json" in line for line in warnings_of(caplog)] == [True]
    caplog.clear()
    (tmp_path / "old" / "a").mkdir(parents=True)
    (tmp_path / "old" / "a" / "results.json").write_text('"just a string"')
    main(["--reindex", str(tmp_path / "old")])
    out = capsys.readouterr()
    assert "0 completed runs indexed" in out.out
    assert ["old/a/results.json" in line for line in warnings_of(caplog)] == [True]
