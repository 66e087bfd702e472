"""A kept checkpoint resumes only when it is whole, unaltered and was trained on the same data;
planted files never run; identical runs never share one; outputs are checked before training
and a full disk at the end loses no metrics."""

import errno
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emoe_cli.cli import train
from emoe_cli.cli.train import run
from emoe_cli.experiment import recipe
from emoe_cli.tracking import records
from tests.helpers import compose_config

pytestmark = pytest.mark.slow  # end-to-end runs (and one emoe-run process start)
PROJECT = str(Path(__file__).resolve().parents[2])
SENTENCES = ["a fine film", "a dull film", "great acting", "poor acting", "loved it",
             "hated it", "truly moving", "badly paced"]


def write_task_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train": folder / "train.csv", "validation": folder / "dev.csv"}
    rows = [(text, 5 if i % 2 == 0 else 1) for i, text in enumerate(SENTENCES)]
    files["train"].write_text("review,stars\n" + "".join(f"{t},{s}\n" for t, s in rows * 2))
    files["validation"].write_text("review,stars\n" + "".join(f"{t},{s}\n" for t, s in rows))
    return files


def task_overrides(files: dict[str, Path], checkpoints: Path, minilm2_dir: str) -> list[str]:
    """Two MiniLM layers on 16 rows of a local CSV task: one epoch of two steps."""
    return ["task=custom_example", "task.ood=[]", f"task.files.train={files['train']}",
            f"task.files.validation={files['validation']}", "logger=none",
            f"model.name_or_path={minilm2_dir}", "moe.layers=[0,1]", "moe.num_experts=16",
            "moe.top_k=4", "data.root=null", "trainer.batch_size=8", "trainer.epochs=1",
            f"trainer.checkpoint_dir={checkpoints}", "trainer.keep_checkpoint=true",
            f"sweep.index_dir={checkpoints.parent / 'index'}"]


@pytest.fixture(scope="module")
def kept(minilm2_dir, tmp_path_factory):
    """A completed run whose checkpoint was kept, to copy and tamper with."""
    base = tmp_path_factory.mktemp("kept")
    files = write_task_files(base / "data")
    run(compose_config(task_overrides(files, base / "checkpoints", minilm2_dir)), base / "first")
    assert list((base / "checkpoints").glob("*/last/complete"))
    return base, json.loads((base / "first" / "results.json").read_text())


def run_identity_of(overrides) -> str:
    cfg = compose_config(overrides)
    return train.run_identity(train.new_record(cfg).config, cfg.sweep.identity_ignore)


@pytest.fixture
def fresh(kept, tmp_path, minilm2_dir):
    """This test's own copy of the data and the kept checkpoint: (overrides, `last` folder).

    The copied data lives elsewhere, which changes task.files and so the identity: the
    checkpoint moves to the new identity's folder, as a user moving a run would do.
    """
    base, _ = kept
    shutil.copytree(base / "data", tmp_path / "data")
    files = {"train": tmp_path / "data" / "train.csv",
             "validation": tmp_path / "data" / "dev.csv"}
    overrides = task_overrides(files, tmp_path / "checkpoints", minilm2_dir)
    (saved,) = (base / "checkpoints").iterdir()
    folder = tmp_path / "checkpoints" / run_identity_of(overrides)
    shutil.copytree(saved, folder)
    return overrides, folder / "last"


def refused(overrides, folder, capsys) -> str:
    """Run, expect the one-line refusal (exit 2, no traceback), return that line."""
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config(overrides), folder)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("emoe-run: error: ")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def test_an_intact_checkpoint_resumes_to_the_same_result(kept, fresh, tmp_path):
    _, first = kept
    overrides, _ = fresh
    run(compose_config(overrides), tmp_path / "again")
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["status"] == "completed" and "resumed_from" in again
    assert (again["id"], again["epochs"]) == (first["id"], first["epochs"])


def test_other_training_data_refuses_to_resume(fresh, tmp_path, capsys):
    overrides, _ = fresh
    train_file = tmp_path / "data" / "train.csv"
    train_file.write_text(train_file.read_text().replace("a fine film,5", "a fine film,1", 1))
    line = refused(overrides, tmp_path / "run", capsys)
    assert f"task.files.train={train_file}" in line and "training data differs" in line
    assert "trainer.resume=false" in line


@pytest.mark.parametrize("part", ["random_states_0.pkl", "model.safetensors",
                                  "training_state.json", "manifest.json"])
def test_a_checkpoint_missing_a_part_refuses_to_resume(fresh, tmp_path, capsys, part):
    overrides, last = fresh
    (last / part).unlink()
    line = refused(overrides, tmp_path / "run", capsys)
    assert part in line and "trainer.resume=false" in line


@pytest.mark.parametrize("part", ["optimizer.bin", "model.safetensors"])
def test_a_cut_short_or_altered_file_is_named_in_one_line(fresh, tmp_path, capsys, part):
    overrides, last = fresh
    data = (last / part).read_bytes()
    (last / part).write_bytes(data[: len(data) // 2])
    line = refused(overrides, tmp_path / "cut", capsys)
    assert str(last / part) in line and "trainer.resume=false" in line
    (last / part).write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, one bit off
    line = refused(overrides, tmp_path / "flipped", capsys)
    assert str(last / part) in line and "changed" in line


class Payload:
    """Unpickling this creates `marker`: what a planted checkpoint file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name, manifest_too", [
    ("custom_checkpoint_0.pkl", False), ("random_states_0.pkl", False),
    ("optimizer.bin", False), ("random_states_0.pkl", True)])
def test_a_planted_pickle_never_runs(fresh, tmp_path, capsys, name, manifest_too):
    """Planted beside the checkpoint, over one of its files, or with a manifest to match."""
    overrides, last = fresh
    marker = tmp_path / "payload-ran"
    (last / name).write_bytes(pickle.dumps({"state": Payload(marker)}))
    if manifest_too:
        manifest = json.loads((last / "manifest.json").read_text())
        manifest["files"][name] = {"bytes": (last / name).stat().st_size,
                                   "sha256": hashlib.sha256((last / name).read_bytes()).hexdigest()}
        (last / "manifest.json").write_text(json.dumps(manifest))
    stopped = SystemExit(0)
    try:
        run(compose_config(overrides), tmp_path / "run")
    except SystemExit as exited:
        stopped = exited
        assert stopped.code == 2  # refused in one line: fine, as long as nothing ran
        assert "Traceback" not in capsys.readouterr().err
    assert not marker.exists(), f"the planted {name} ran its code"
    if manifest_too:  # accelerate would skip the unreadable RNG state and resume silently
        assert stopped.code == 2


def test_an_identical_live_run_is_skipped_not_shared(fresh, tmp_path, capsys, monkeypatch):
    from emoe_cli.training.lock import IdentityLock

    overrides, last = fresh
    monkeypatch.setattr(recipe, "fit", lambda *a, **k: pytest.fail("trained beside a twin"))
    identity = run_identity_of(overrides)
    lock_path = tmp_path / "checkpoints" / f"{identity}.lock"
    with IdentityLock(lock_path, str(tmp_path / "live")):
        with pytest.raises(SystemExit) as exit_info:
            run(compose_config(overrides), tmp_path / "single")
        assert exit_info.value.code == train.BUSY_EXIT
        err = capsys.readouterr().err
        assert f"emoe-run: skipped: an identical run (pid {os.getpid()})" in err
        assert str(tmp_path / "live" / "results.json") in err
        run(compose_config(overrides), tmp_path / "job", multirun=True)  # a sweep's job
        marker = json.loads((tmp_path / "job" / "skipped.json").read_text())
        assert marker["completed_at"] == str(tmp_path / "live" / "results.json")
    assert (last / "complete").is_file()  # the live run's checkpoint was left alone
    assert not lock_path.exists()  # released and removed


def test_a_killed_holder_leaves_no_lock(tmp_path):
    """flock dies with its process: SIGKILL cannot leave an identity locked for ever."""
    from emoe_cli.training.lock import IdentityBusy, IdentityLock

    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from emoe_cli.training.lock import "
         "IdentityLock; IdentityLock(sys.argv[1], 'live').acquire(); print('held', "
         "flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": PROJECT})
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(IdentityBusy) as busy:
        IdentityLock(path).acquire()
    assert busy.value.note == "live" and busy.value.pid == f"pid {holder.pid}"
    holder.kill()
    holder.wait()
    with IdentityLock(path):
        assert path.is_file()
    assert not path.exists()


def test_an_unwritable_checkpoint_dir_fails_before_training(fresh, tmp_path, capsys,
                                                            monkeypatch):
    overrides, _ = fresh
    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr(recipe, "fit", lambda *a, **k: pytest.fail("trained before the check"))
    line = refused([*overrides, f"trainer.checkpoint_dir={tmp_path / 'a_file' / 'ckpt'}"],
                   tmp_path / "run", capsys)
    assert f"trainer.checkpoint_dir={tmp_path / 'a_file' / 'ckpt'}: not writable" in line


def test_an_unwritable_hydra_run_dir_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    finished = subprocess.run(
        [sys.executable, "-m", "emoe_cli.cli.train", "logger=none",
         f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": PROJECT, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert finished.returncode == 2
    assert "Traceback" not in finished.stderr
    assert finished.stderr.strip().splitlines() == [
        f"emoe-run: error: hydra.run.dir={tmp_path / 'a_file' / 'run'}: not writable (Not a "
        "directory); valid: a folder this user can create files in"]


def test_a_full_disk_at_the_end_prints_the_metrics_and_keeps_the_earlier_record(
        fresh, tmp_path, capsys, monkeypatch):
    overrides, _ = fresh
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text('{"status": "earlier"}')

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(records.os, "fsync", disk_full)
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*overrides, "trainer.checkpoint=false"]), folder)
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["id"]["score"] >= 0 and "accuracy" in metrics["id"]["metrics"]
    assert "ID  validation" in out
    assert "Traceback" not in err
    assert f"emoe-run: error: {folder / 'results.json'}: the record could not be written " \
           "(No space left on device)" in err
    assert json.loads((folder / "results.json").read_text()) == {"status": "earlier"}
    assert not list(folder.glob(".results.json.*"))  # no half-written temporary left


def test_a_full_disk_while_checkpointing_is_one_line(fresh, tmp_path, capsys, monkeypatch):
    from accelerate import Accelerator

    overrides, _ = fresh

    def disk_full(self, output_dir=None, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Accelerator, "save_state", disk_full)
    with pytest.raises(SystemExit) as exit_info:
        run(compose_config([*overrides, "trainer.resume=false"]), tmp_path / "run")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "emoe-run: run failed: trainer.checkpoint_dir: could not save " in err
    assert "(No space left on device)" in err and "trainer.checkpoint=false" in err
