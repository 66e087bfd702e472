from emoe_cli.records import RunRecord, save_record


def test_only_the_main_process_writes_the_record(tmp_path, monkeypatch):
    record = RunRecord(task="t", model="m", method="dense", seed=0, config={})
    monkeypatch.setenv("RANK", "1")
    assert not save_record(record, tmp_path / "a").exists()
    monkeypatch.setenv("RANK", "0")
    assert save_record(record, tmp_path / "a").exists()
