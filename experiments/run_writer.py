"""The files of one run directory, written so that nothing is lost and nothing half-done looks finished.

Rows of ``metrics.csv`` and ``links.csv`` are appended and flushed round by
round, so an interrupted run keeps every round it completed, readable.
``run.json`` says where the run stands: ``running`` while rounds are added
(and still, after a SIGKILL), ``interrupted`` after SIGINT, and ``done`` or
``diverged`` only once every file is complete. Only those two count as
finished; rerunning an unfinished run starts it again from round 0, and since
runs are deterministic it completes with the same rows.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import IO, Any

from experiments.atomic import write_atomically

FINISHED = ("done", "diverged")


def format_value(value: Any) -> str:
    """CSV text of a value: floats with 8 significant digits, NaN as an empty field."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.8g}"
    return str(value)


class _CsvAppender:
    def __init__(self, path: Path):
        self.path = path
        self._stream: IO[str] | None = None
        self._writer: Any = None
        self._columns: list[str] = []

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self._stream is None:
            self._columns = list(rows[0])
            self._stream = open(self.path, "w", newline="")
            self._writer = csv.writer(self._stream, lineterminator="\n")
            self._writer.writerow(self._columns)
        for row in rows:
            self._writer.writerow([format_value(row[column]) for column in self._columns])
        self._stream.flush()

    def close(self, empty_header: list[str] | None = None) -> None:
        if self._stream is None and empty_header is not None:
            self.path.write_text(",".join(empty_header) + "\n")
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class RunWriter:
    """Owns ``results/<run-id>/`` during a run."""

    def __init__(self, run_dir: Path, config_toml: str, details: dict):
        self.run_dir = Path(run_dir)
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)  # an earlier attempt is recomputed from round 0
        self.run_dir.mkdir(parents=True)
        write_atomically(self.run_dir / "config.toml", config_toml)
        self._details = dict(details)
        self.rounds_completed = 0
        self._set_status("running")
        self._metrics = _CsvAppender(self.run_dir / "metrics.csv")
        self._links = _CsvAppender(self.run_dir / "links.csv")

    def add_round(self, metrics_row: dict, link_rows: list[dict]) -> None:
        self._metrics.append([metrics_row])
        self._links.append(link_rows)
        self.rounds_completed = int(metrics_row["round"])

    def write_text(self, name: str, text: str) -> None:
        write_atomically(self.run_dir / name, text)

    def finish(self, status: str, **details: Any) -> None:
        """Close the CSVs and record the final status; call it last, after every other file is written."""
        self._metrics.close()
        self._links.close(empty_header=["round", "exchange"])
        self._details.update(details)
        self._set_status(status)

    def _set_status(self, status: str) -> None:
        record = dict(self._details, status=status, rounds_completed=self.rounds_completed)
        write_atomically(self.run_dir / "run.json", json.dumps(record, indent=2, sort_keys=True))


def run_status(run_dir: Path) -> str | None:
    """The status recorded in a run directory, or None when there is no readable record."""
    try:
        return json.loads((Path(run_dir) / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return None
