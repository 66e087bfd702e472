"""One run over two processes (torchrun, gloo on CPU), as on a multi-GPU node."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_a_two_process_run_scores_every_example_and_writes_one_record(minilm2_dir,
                                                                      shared_data, tmp_path):
    index = tmp_path / "index"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--standalone", "-m", "emoe_cli.cli.train", "experiment=quickstart",
               "logger=none", f"model.name_or_path={minilm2_dir}", "moe.layers=[0,1]",
               "moe.num_experts=16", "moe.top_k=4", f"data.root={shared_data}",
               "data.max_train_samples=32", "data.max_eval_samples=15", "trainer.batch_size=8",
               "trainer.epochs=1", "trainer.device=cpu", f"sweep.index_dir={index}",
               f"trainer.checkpoint_dir={tmp_path / 'checkpoints'}",
               f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "completed"
    # 15 examples over 2 processes: the padded duplicate is dropped when gathering.
    assert record["id"]["num_examples"] == 15
    assert all(result["num_examples"] == 15 for result in record["ood"].values())
    assert record["epochs"][0]["step"] == 2  # 32 examples / (8 per process × 2 processes)
    assert finished.stdout.count("record:") == 1  # the summary comes from rank 0 only
    assert len(list(index.iterdir())) == 1
