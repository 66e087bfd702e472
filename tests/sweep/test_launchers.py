"""Launcher presets: the SLURM submission they generate, joblib, and one GPU per job."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from emoe_cli.sweep import gpus

ROOT = Path(__file__).resolve().parents[2]


def hydra_launcher(overrides):
    with initialize_config_module("emoe_cli.conf", version_base="1.3"):
        return compose("config", overrides, return_hydra_config=True).hydra.launcher


def fake_slurm(folder: Path) -> Path:
    """sbatch that keeps the script it is given and answers with a job id; srun exists."""
    folder.mkdir()
    sbatch = '#!/bin/sh\ncp "$1" "$FAKE_SBATCH_COPY"\necho "Submitted batch job 4242"\n'
    scripts = {"sbatch": sbatch,
               "srun": "#!/bin/sh\nexit 0\n", "sacct": "#!/bin/sh\nexit 0\n"}
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(stat.S_IRWXU)
    return folder


def test_slurm_preset_writes_the_expected_submission(tmp_path):
    copy = tmp_path / "submitted.sh"
    env = {**os.environ, "PATH": f"{fake_slurm(tmp_path / 'bin')}:{os.environ['PATH']}",
           "FAKE_SBATCH_COPY": str(copy), "EMOE_SLURM_PARTITION": "a100"}
    command = [sys.executable, "-m", "emoe_cli.cli.train", "--multirun", "hydra/launcher=slurm",
               "experiment=quickstart", "seed=0,1,2", "hydra.launcher.timeout_min=90",
               "hydra.launcher.array_parallelism=2", "hydra.launcher.gpus_per_node=1",
               f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    # submitit waits on the (fake) queue after submitting; stop it once the script is in
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not copy.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        stderr = process.communicate()[1].decode()
    assert copy.exists(), stderr[-2000:]
    script = copy.read_text()
    for line in ["#SBATCH --array=0-2%2", "#SBATCH --partition=a100", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB",
                 "#SBATCH --job-name=emoe"]:
        assert line in script.splitlines(), line
    assert "srun" in script and "submitit.core._submit" in script


def test_large_preset_and_local_parallel_preset():
    large = hydra_launcher(["hydra/launcher=slurm_large"])
    assert (large.timeout_min, large.mem_gb, large.gpus_per_node) == (1440, 64, 1)
    assert large._target_.endswith("SlurmLauncher")
    local = hydra_launcher(["hydra/launcher=local_parallel"])
    assert local._target_.endswith("JoblibLauncher") and local.n_jobs == 2


@pytest.fixture
def fresh_claims(monkeypatch):
    monkeypatch.setattr(gpus, "_held", None)
    yield monkeypatch
    gpus._held = None


def test_each_job_locks_its_own_gpu(tmp_path, fresh_claims):
    fresh_claims.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    first = gpus.claim_gpu(tmp_path)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert gpus.claim_gpu(tmp_path) is first  # a process keeps its GPU for later jobs
    fresh_claims.setattr(gpus, "_held", None)  # as if another process
    fresh_claims.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    second = gpus.claim_gpu(tmp_path)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    fresh_claims.setattr(gpus, "_held", None)
    fresh_claims.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    with pytest.raises(TimeoutError, match="no free GPU among 3, 5"):
        gpus.claim_gpu(tmp_path, poll_seconds=0.05, timeout_seconds=0.1)
    second.close()  # that job's process ended: its GPU is free again
    fresh_claims.setattr(gpus, "_held", None)
    assert gpus.claim_gpu(tmp_path) is not None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    first.close()


def test_no_gpu_means_no_claim(tmp_path, fresh_claims):
    fresh_claims.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.claim_gpu(tmp_path) is None
