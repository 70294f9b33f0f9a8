"""The files of one run directory, written so that nothing is lost and nothing half-done looks finished.

Rows of ``metrics.csv`` and ``links.csv`` are appended and flushed round by
round, so an interrupted run keeps every round it completed, readable.
``run.json`` says where the run stands: ``running`` while rounds are added
(and still, after a SIGKILL), ``interrupted`` after SIGINT, and ``done`` or
``diverged`` only once every file is complete (``done`` only by the process
that wrote every round's row), ``failed`` when the run raised. Only ``done``
and ``diverged`` count as finished. A finished ``run.json`` also records each
result file's size, rows and checksum (``experiments.run.integrity``), and a
finished run is reused only when ``run.json`` records the same code
fingerprint as the code now running (``experiments.run.fingerprint``) and every
file still matches its record; otherwise, or when unfinished, the run is made
again, from its last checkpoint (``experiments.run.checkpoint``) when one was kept
by the same code, else from round 0, and since runs are deterministic it
completes with the same rows.

One process owns a run directory at a time: ``run_lock`` holds an OS file
lock (``<results>/.locks/<run-id>.lock``) from before the directory is looked
at until its status is final. A second process asking for the same run waits
for the first, then finds it finished and reuses it.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from experiments.run.atomic import write_atomically
from experiments.run.integrity import damage, manifest

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
        if path.is_file() and path.stat().st_size:  # resumed: append under the header already written
            with open(path, newline="") as stream:
                self._columns = next(csv.reader(stream))
            self._stream = open(path, "a", newline="")
            self._writer = csv.writer(self._stream, lineterminator="\n")

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self._stream is None:  # header and first rows appear at once: the file is absent or readable
            self._columns = list(rows[0])
            first = io.StringIO()
            self._write_rows(csv.writer(first, lineterminator="\n"), rows, header=True)
            write_atomically(self.path, first.getvalue())
            self._stream = open(self.path, "a", newline="")
            self._writer = csv.writer(self._stream, lineterminator="\n")
            return
        self._write_rows(self._writer, rows)
        self._stream.flush()

    def _write_rows(self, writer: Any, rows: list[dict], header: bool = False) -> None:
        if header:
            writer.writerow(self._columns)
        for row in rows:
            writer.writerow([format_value(row[column]) for column in self._columns])

    def close(self, empty_header: list[str] | None = None) -> None:
        if self._stream is None and empty_header is not None:
            write_atomically(self.path, ",".join(empty_header) + "\n")
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class RunWriter:
    """Owns ``results/<run-id>/`` during a run."""

    def __init__(self, run_dir: Path, config_toml: str, details: dict, expected_rounds: int,
                 resume: tuple[int, dict] | None = None):
        """A new run directory, or with ``resume = (round, CSV marks)`` the one an interrupted run left,
        its CSVs already cut back to the checkpoint's round (``experiments.run.checkpoint.cut_back``)."""
        self.run_dir = Path(run_dir)
        self.expected_rounds = expected_rounds
        self._details = dict(details)
        if resume is None:
            if self.run_dir.exists():
                shutil.rmtree(self.run_dir)  # an earlier attempt is recomputed from round 0
            self.run_dir.mkdir(parents=True)
            self.rounds_completed = 0
        else:
            self.rounds_completed, _ = resume
            for name in ("devices.csv", "accuracy.png"):  # written again at the end
                (self.run_dir / name).unlink(missing_ok=True)
        write_atomically(self.run_dir / "config.toml", config_toml)
        self._set_status("running")
        self._metrics = _CsvAppender(self.run_dir / "metrics.csv")
        self._links = _CsvAppender(self.run_dir / "links.csv")
        self._devices = _CsvAppender(self.run_dir / "device_metrics.csv")

    def add_round(self, metrics_row: dict, link_rows: list[dict], device_rows: list[dict]) -> None:
        self._metrics.append([metrics_row])
        self._links.append(link_rows)
        self._devices.append(device_rows)
        self.rounds_completed = int(metrics_row["round"])

    def write_text(self, name: str, text: str) -> None:
        write_atomically(self.run_dir / name, text)

    def finish(self, status: str, **details: Any) -> None:
        """Close the CSVs and record the final status; call it last, after every other file is written."""
        if status == "done" and self.rounds_completed != self.expected_rounds:
            raise RuntimeError(f"{self.run_dir}: cannot mark done after {self.rounds_completed} of "
                               f"{self.expected_rounds} rounds")
        self._metrics.close()
        self._links.close(empty_header=["round", "exchange"])
        self._devices.close()
        self._details.update(details, finished_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if status in FINISHED:
            self._details["files"] = manifest(self.run_dir)
        self._set_status(status)

    def _set_status(self, status: str) -> None:
        record = dict(self._details, status=status, rounds_completed=self.rounds_completed)
        write_atomically(self.run_dir / "run.json", json.dumps(record, indent=2, sort_keys=True))


def recorded_number(value: object) -> float | None:
    """A number as run.json records it, or None where it is absent or not a number (a damaged or older run)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_record(run_dir: Path) -> dict:
    """The run's ``run.json``, or {} when there is no readable record."""
    try:
        record = json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def run_status(run_dir: Path) -> str | None:
    """The status recorded in a run directory, or None when there is no readable record."""
    return run_record(run_dir).get("status")


def stale_because(run_dir: Path, fingerprint: str) -> str | None:
    """Why a finished run may not be reused (None: it may): other code made it, or its files were damaged
    after it finished."""
    record = run_record(run_dir)
    recorded = record.get("code_fingerprint")
    if recorded is None:
        return "made before code fingerprints were recorded"
    if recorded != fingerprint:
        return f"code changed since it ran (fingerprint {recorded}, now {fingerprint})"
    broken = damage(run_dir, record.get("files"))
    return f"damaged: {broken}" if broken else None


def reusable(run_dir: Path, fingerprint: str) -> bool:
    return run_status(run_dir) in FINISHED and stale_because(run_dir, fingerprint) is None


def finished_damage(run_dir: Path) -> str | None:
    """For a finished run: why its files cannot be trusted (None: they match run.json's record)."""
    return damage(run_dir, run_record(run_dir).get("files"))


@contextmanager
def run_lock(results_root: Path, run_id: str, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the OS lock of one run directory; wait (telling ``on_wait``) while another process holds it.

    The lock dies with its process, so a killed run never blocks the next one.
    Creating the lock file is also the first write under the results root, so an
    unwritable root fails here, before any trace is simulated.
    """
    locks = Path(results_root) / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{run_id}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            on_wait(f"[nsdml] run {run_id} is being computed by another process (pid {holder}); waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
