"""The report's method figure: whole error bars, a legend clear of the data, vector files."""

import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.transforms import Bbox
from PIL import Image

from emoe_cli.report import plots, tables
from emoe_cli.report.runs import load_runs
from emoe_cli.tracking.records import write_json_atomic
from tests.report.test_report import record

# Tall bars (so a legend inside the axes has nowhere to go) and one wide seed spread (an
# error bar reaching far below the lowest mean, which a y axis cut near the means would cut).
SCORES = {"dense": (0.50, 0.90), "noisy": (0.80, 0.86), "gmoe": (0.82, 0.88),
          "emoe": (0.84, 0.86), "emoe_learn": (0.83, 0.87)}


@pytest.fixture
def cell_table(tmp_path):
    for task in ("rte", "mrpc", "cola"):
        for method, per_seed in SCORES.items():
            for seed, score in enumerate(per_seed):
                write_json_atomic(tmp_path / f"{task}-{method}-{seed}" / "results.json",
                                  record(task, method, 2e-5, seed, score,
                                         {"a": score - 0.1}, 0.1))
    return tables.cells(load_runs([str(tmp_path)]))


def drawn(figure):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def error_bars(axis):
    """The vertical lines of each bar series' error bars."""
    return [lines for container in axis.containers if isinstance(container, ErrorbarContainer)
            for lines in container.lines[2]]


def test_error_bars_are_whole_and_bars_start_at_zero(cell_table):
    figure = plots.method_figure(cell_table, "bert")
    drawn(figure)
    for axis in figure.axes:
        low, high = axis.get_ylim()
        assert low <= 0
        ends = [y for lines in error_bars(axis) for segment in lines.get_segments()
                for _, y in segment]
        assert len(ends) == 2 * 3 * len(SCORES)  # every bar has its error bar
        assert low <= min(ends) and max(ends) <= high, (axis.get_title(), low, high)


def test_the_legend_covers_no_bar_and_no_error_bar(cell_table):
    figure = plots.method_figure(cell_table, "bert")
    renderer = drawn(figure)
    legends = [*figure.legends, *(a.get_legend() for a in figure.axes if a.get_legend())]
    assert len(legends) == 1 and len(legends[0].get_texts()) == len(SCORES)
    box = legends[0].get_window_extent(renderer)
    for axis in figure.axes:
        for bar in axis.patches:
            assert not box.overlaps(bar.get_window_extent(renderer)), axis.get_title()
        for lines in error_bars(axis):
            for segment in lines.get_segments():
                ends = axis.transData.transform(segment)  # display units, as the legend's box
                assert not box.overlaps(Bbox([ends.min(axis=0), ends.max(axis=0)]))


def test_png_pdf_and_svg_are_written_and_valid(cell_table, tmp_path):
    paths = plots.plot_all(cell_table, tmp_path)
    stem = tmp_path / "methods_bert_dev"
    assert sorted(paths) == sorted(stem.with_name(f"{stem.name}.{kind}")
                                   for kind in ("png", "pdf", "svg"))
    assert stem.with_suffix(".pdf").read_bytes().startswith(b"%PDF-")
    assert ElementTree.parse(stem.with_suffix(".svg")).getroot().tag.endswith("svg")
    with Image.open(stem.with_suffix(".png")) as png:
        assert png.format == "PNG" and np.allclose(png.info["dpi"], 300, atol=1)
    first = [path.read_bytes() for path in paths]
    assert [path.read_bytes() for path in plots.plot_all(cell_table, tmp_path)] == first
