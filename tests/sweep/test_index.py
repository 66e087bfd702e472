import json

from emoe_cli.records import write_json_atomic
from emoe_cli.sweep.index import add_completed, find_completed, reindex


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
