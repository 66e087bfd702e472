"""A run over a broken data file stops before training with one `emoe-run: error:` line."""

import json

import pytest

from emoe_cli.cli.train import run
from tests.helpers import compose_config

TRAIN = "review,stars\ngreat,5\nawful,1\nfine,4\nbad,2\n"


@pytest.mark.parametrize("dev, num_labels, message", [
    (b"review,stars\ngreat,5\nodd,NaN\n", 1,
     "dev.csv:3: column 'stars' is 'NaN'; valid: a finite number"),
    (b"review,stars\ngreat,5\nodd,1,2\n", 2, "dev.csv:3: 3 fields, expected 2"),
    ("review,stars\ngreat,5\ncafé,1\n".encode("latin-1"), 2,
     "dev.csv:3: byte 0xe9 is not UTF-8; data files must be UTF-8 text"),
], ids=["nan-label", "extra-field", "latin-1"])
def test_a_bad_data_file_ends_the_run_with_one_line_and_exit_2(minilm_path, tmp_path, capsys,
                                                               dev, num_labels, message):
    (tmp_path / "train.csv").write_text(TRAIN)
    (tmp_path / "dev.csv").write_bytes(dev)
    regression = ["task.label_map=null", "task.metrics=[pearson]"] if num_labels == 1 else []
    cfg = compose_config(["model=minilm", "task=custom_example", "debug=fast",
                          f"task.files.train={tmp_path}/train.csv",
                          f"task.files.validation={tmp_path}/dev.csv", "task.ood=[]",
                          f"task.num_labels={num_labels}", *regression])
    with pytest.raises(SystemExit) as exit_info:
        run(cfg, tmp_path / "out")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emoe-run: error: ") and message in err[0]
    record = json.loads((tmp_path / "out" / "results.json").read_text())
    assert record["status"] == "failed" and message in record["error"]
