"""`logger=csv`: the run's metrics as `metrics.csv` in its folder, through accelerate's
tracker interface, with no package beyond the standard library."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from accelerate.tracking import GeneralTracker

METRICS_FILE = "metrics.csv"


class CSVTracker(GeneralTracker):
    """A `step` column, then one column per metric in the order they first appear; one row
    per logged step (values logged at the same step share a row).

    Each row reaches the file as it is logged: a new row is appended; a new column or a
    value for the last row rewrites the file (a temporary file renamed over it), so a crash
    keeps every row logged before it. A run that finds the file (a requeued job) continues
    it, and a resumed run that logs a step again replaces the rows from that step on.
    """

    name = "csv"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike, **kwargs) -> None:
        super().__init__()
        self.run_name, self.path = run_name, Path(logging_dir) / METRICS_FILE
        self.columns, self.rows = ["step"], []

    @property
    def tracker(self) -> Path:
        return self.path

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            with self.path.open(newline="") as file:
                reader = csv.DictReader(file)
                self.columns = list(reader.fieldnames or self.columns)
                self.rows = list(reader)

    def store_init_configuration(self, values: dict) -> None:
        pass  # the config is in the run folder already (.hydra/, results.json)

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        values = {k: v for k, v in values.items() if isinstance(v, (int, float, str))}
        new_columns = [key for key in values if key not in self.columns]
        self.columns += new_columns
        rewrite = bool(new_columns) or not self.path.is_file()
        last = _step(self.rows[-1]) if self.rows else None
        if step is not None and last is not None and step < last:  # logged again on resume
            self.rows = [row for row in self.rows if _step(row) is None or _step(row) < step]
            last, rewrite = (_step(self.rows[-1]) if self.rows else None), True
        if step is not None and step == last:
            self.rows[-1].update(values)
            rewrite = True
        else:
            self.rows.append({"step": "" if step is None else step, **values})
        if rewrite:
            self._rewrite()
        else:
            with self.path.open("a", newline="") as file:
                csv.DictWriter(file, self.columns, restval="").writerow(self.rows[-1])

    def _rewrite(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with temporary.open("w", newline="") as file:
            writer = csv.DictWriter(file, self.columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)

    def finish(self) -> None:
        pass  # every row is on disk already


def _step(row: dict) -> int | None:
    value = row.get("step")
    return None if value in (None, "") else int(value)
