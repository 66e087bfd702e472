"""The `report` extra: emoe-run works without it, the commands that need it say so in one line."""

import json
import subprocess
import sys

import pytest

from tests.helpers import assert_one_line_error

REPORT_ONLY = ("matplotlib", "tabulate")  # in the report extra and in no base dependency


def hide(monkeypatch, *names):
    """Make `import name` fail as if the package were not installed."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_report_without_its_libraries_is_one_line_naming_the_extra(monkeypatch, tmp_path,
                                                                    capsys):
    from emoe_cli.report.cli import main

    hide(monkeypatch, "matplotlib", "pandas")
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path)])
    line = assert_one_line_error(stop.value.code, capsys.readouterr().err, "",
                                 program="emoe-report")
    assert line == "emoe-report: error: needs matplotlib/pandas; pip install 'emoe-cli[report]'"


def test_routing_plots_without_matplotlib_is_one_line(monkeypatch, tmp_path, capsys):
    from emoe_cli.analysis.routing_report import cli

    hide(monkeypatch, "matplotlib")
    with pytest.raises(SystemExit) as stop:
        cli([str(tmp_path)])
    assert_one_line_error(stop.value.code, capsys.readouterr().err,
                          "needs matplotlib; pip install 'emoe-cli[report]'",
                          program="emoe-routing")


def test_inspect_without_matplotlib_is_one_line(monkeypatch, tmp_path, capsys):
    from emoe_cli.cli import inspection

    hide(monkeypatch, "matplotlib")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["emoe-inspect", f"hydra.run.dir={tmp_path}/out"])
    with pytest.raises(SystemExit) as stop:
        inspection.cli()
    assert_one_line_error(stop.value.code, capsys.readouterr().err,
                          "needs matplotlib; pip install 'emoe-cli[report]'",
                          program="emoe-inspect")


@pytest.mark.slow
def test_a_run_needs_none_of_the_report_libraries(shared_data, minilm_path, tmp_path):
    # a fresh interpreter: in this one, other tests may have imported them already
    hidden = ", ".join(f"{name!r}: None" for name in REPORT_ONLY)
    code = (f"import sys; sys.modules.update({{{hidden}}}); sys.argv[0] = 'emoe-run'; "
            "from emoe_cli.cli.train import cli; cli()")
    overrides = ["experiment=quickstart", "debug=fast", "moe=dense", "data.max_train_samples=16",
                 "data.max_eval_samples=8", f"data.root={shared_data}",
                 f"trainer.checkpoint_dir={tmp_path}/ckpt", f"sweep.index_dir={tmp_path}/index",
                 f"hydra.run.dir={tmp_path}/run"]
    done = subprocess.run([sys.executable, "-c", code, *overrides], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "completed", record.get("error")
