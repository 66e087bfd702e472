"""Progress lines in the log (`trainer.log_every_steps`) and quiet tqdm bars without a TTY,
on the four-feature classifier of test_fit (6 steps an epoch, 3 epochs, about a second);
then one real emoe-run writing train.log and metrics.csv."""

import csv
import logging
import os
import re
import subprocess
import sys

import pytest
from torch.utils.data import DataLoader

from emoe_cli.experiment.recipe import build_accelerator
from emoe_cli.tracking.trackers import NullTracker
from emoe_cli.training.loop import fit
from emoe_cli.training.progress import clock_text
from emoe_cli.training.sampler import EpochShuffleSampler
from tests.training.test_checkpoint_safety import PROJECT, task_overrides, write_task_files
from tests.training.test_fit import EXAMPLES, Classifier, collate, eval_loss, trainer

LINE = re.compile(r"\| elapsed \d+:\d\d:\d\d \| ETA (\d+:\d\d:\d\d)$")


class Losses(NullTracker):
    def __init__(self):
        self.losses = {}

    def log(self, values, step=None):
        if "train/loss" in values:
            self.losses[step] = values["train/loss"]


def train(tracker=None, **overrides):
    cfg = trainer(**overrides)
    accelerator = build_accelerator(cfg)
    loader = DataLoader(list(range(EXAMPLES)), batch_size=cfg.batch_size, collate_fn=collate,
                        sampler=EpochShuffleSampler(EXAMPLES, seed=0))
    model, loader = accelerator.prepare(Classifier(), loader)
    fit(model, loader, lambda: eval_loss(model), accelerator, cfg, tracker)


def progress_lines(caplog, **overrides):
    losses = Losses()
    with caplog.at_level(logging.INFO, logger="emoe"):
        train(tracker=losses, **overrides)
    return [r.getMessage() for r in caplog.records if r.name == "emoe"], losses.losses


def test_a_line_every_n_steps_and_one_per_epoch_with_loss_lr_score_and_eta(caplog):
    lines, losses = progress_lines(caplog, log_every_steps=4)
    assert [line.split(" |")[0] for line in lines] == [
        "step 4/18 (epoch 1/3)", "epoch 1/3 done", "step 8/18 (epoch 2/3)", "epoch 2/3 done",
        "step 16/18 (epoch 3/3)", "epoch 3/3 done"]  # step 12 ends an epoch: its line only
    assert all(LINE.search(line) for line in lines), lines
    assert LINE.search(lines[-1]).group(1) == "0:00:00"  # nothing left
    # step lines: the mean loss since the previous line (steps 1-4, then 7-8)
    assert f"loss {sum(losses[s] for s in (1, 2, 3, 4)) / 4:.4f}" in lines[0]
    assert f"loss {(losses[7] + losses[8]) / 2:.4f}" in lines[2]
    caplog.clear()
    lines, losses = progress_lines(caplog, log_every_steps=2)
    assert f"loss {(losses[3] + losses[4]) / 2:.4f}" in lines[1]  # after the step-2 line
    epochs = [line for line in lines if " done " in line]
    assert all(re.search(r"\| step (6|12|18)/18 \| epoch loss [\d.]+ \| lr [\d.e-]+ \| "
                         r"ID score -[\d.]+ \(best -[\d.]+, epoch \d\)", e) for e in epochs)
    assert "lr 0.0667" in epochs[0]  # linear decay from 0.1 over 18 steps, after step 6


def test_zero_gives_epoch_lines_only_and_evaluations_inside_epochs_get_their_own(caplog):
    lines, _ = progress_lines(caplog, log_every_steps=0, eval_every_steps=5)
    assert [line.split(" |")[0] for line in lines] == [
        "step 5/18 evaluated", "epoch 1/3 done", "step 10/18 evaluated", "epoch 2/3 done",
        "step 15/18 evaluated", "epoch 3/3 done"]
    assert "ID score" not in lines[1] and "ID score" in lines[-1]  # evaluated at the end
    assert re.search(r"ID score -[\d.]+ \(best -[\d.]+ at step 5\)", lines[0])


def test_the_bars_are_quiet_without_a_terminal(capsys):
    train(log_every_steps=0)
    captured = capsys.readouterr()
    shown = captured.err + captured.out
    assert "%|" not in shown and "it/s]" not in shown  # no tqdm bar: not a TTY here


def test_each_line_reaches_the_console_once(caplog, capsys):
    """Lines pass through tqdm's writer (above any bar) with the console handler's format,
    and no second, unformatted handler is added."""
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("[console] %(message)s"))
    logging.root.addHandler(console)
    try:
        with caplog.at_level(logging.INFO, logger="emoe"):
            train(log_every_steps=0)
    finally:
        logging.root.removeHandler(console)
    err = capsys.readouterr().err
    assert err.count("epoch 1/3 done") == 1 and "[console] epoch 1/3 done" in err


@pytest.mark.parametrize("seconds,text", [(0, "0:00:00"), (59.6, "0:01:00"),
                                          (3725, "1:02:05"), (90061, "25:01:01")])
def test_clock_text(seconds, text):
    assert clock_text(seconds) == text


@pytest.mark.slow
def test_emoe_run_writes_progress_to_train_log_and_metrics_csv(minilm2_dir, tmp_path):
    """The real command: Hydra's train.log and the console get the lines, and the default
    logger (csv) leaves metrics.csv; two MiniLM layers, 16 rows, 2 epochs of 2 steps."""
    files = write_task_files(tmp_path / "data")
    overrides = [*task_overrides(files, tmp_path / "checkpoints", minilm2_dir),
                 "logger=csv", "moe=dense", "trainer.epochs=2", "trainer.log_every_steps=1",
                 f"hydra.run.dir={tmp_path / 'run'}"]
    finished = subprocess.run([sys.executable, "-m", "emoe_cli.cli.train", *overrides],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": PROJECT, "HF_HUB_OFFLINE": "1"})
    assert finished.returncode == 0, finished.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    heads = [line.split("] - ", 1)[1].split(" |")[0] for line in log.splitlines()
             if "][emoe][INFO] - " in line and (" done |" in line or "(epoch" in line)]
    assert heads == ["step 1/4 (epoch 1/2)", "epoch 1/2 done", "step 3/4 (epoch 2/2)",
                     "epoch 2/2 done"]
    assert "epoch 2/2 done | step 4/4" in finished.stdout  # Hydra's console handler
    with (tmp_path / "run" / "metrics.csv").open(newline="") as file:
        table = list(csv.DictReader(file))
    assert [row["step"] for row in table] == ["1", "2", "3", "4"]
    assert table[1]["id/score"] and table[-1]["final/id/score"] and table[0]["train/loss"]
