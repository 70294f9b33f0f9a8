"""``run.log``: every line a run logs, in its own directory, also when a sweep runs it in another process.

The run's own lines (link trace, resume, recompute, warnings), the trace cache's warnings (logger
``nsdml.traces``) and, at ``NSDML_LOG_LEVEL=DEBUG`` (``nsdml -v``), one line per round. Lines logged before the
run's directory exists (a recomputed run's old directory is removed first) are kept in memory and written when
it does; a resumed run appends. run.log is a record of how the run went, not a result: it is not among the
checksummed files and it never decides reuse.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TextIO

LOGGER = logging.getLogger("nsdml")
RUN_LOGGER = logging.getLogger("nsdml.run")
LEVEL_VARIABLE = "NSDML_LOG_LEVEL"  # set by the CLI's -v / -q; inherited by a sweep's worker processes
FILE = "run.log"


class RunLogHandler(logging.Handler):
    def __init__(self, level: int):
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._pending: list[str] = []
        self._file: TextIO | None = None

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record) + "\n"
        if self._file is None:
            self._pending.append(line)
        else:
            self._file.write(line)
            self._file.flush()

    def start(self, run_dir: Path) -> None:
        self._file = open(Path(run_dir) / FILE, "a", encoding="utf-8")
        self._file.writelines(self._pending)
        self._file.flush()
        self._pending = []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


class RunLogging:
    """What a run logs through: ``log(message)`` (to run.log and to the caller's ``echo``), ``debug(message)``
    (run.log at DEBUG, and any handler the CLI set for -v), ``start(run_dir)`` once the directory exists."""

    def __init__(self, echo: Callable[[str], None], handler: RunLogHandler):
        self._echo, self._handler = echo, handler

    def log(self, message: str) -> None:
        RUN_LOGGER.log(logging.WARNING if is_notice(message) else logging.INFO, message.removeprefix("[nsdml] "))
        self._echo(message)

    def debug(self, message: str) -> None:
        RUN_LOGGER.debug(message)

    def start(self, run_dir: Path) -> None:
        self._handler.start(run_dir)


NOTICES = ("warning", "recomputing", "resuming", "not resuming", "diverged")  # what -q still prints: a run changed course


def is_notice(message: str) -> bool:
    """A line a reader must see even with -q: a warning, a recomputed run and why, a divergence."""
    return message.removeprefix("[nsdml] ").startswith(NOTICES)


def configured_level() -> int:
    level = logging.getLevelName(os.environ.get(LEVEL_VARIABLE, "INFO").upper())
    return level if isinstance(level, int) else logging.INFO


@contextmanager
def run_logging(echo: Callable[[str], None]) -> Iterator[RunLogging]:
    """Route a run's lines to its run.log for the duration of the run."""
    level = configured_level()
    handler = RunLogHandler(level)
    previous = LOGGER.level
    LOGGER.setLevel(min(level, previous) if previous else level)
    LOGGER.addHandler(handler)
    try:
        yield RunLogging(echo, handler)
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(previous)
        handler.close()
