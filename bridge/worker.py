"""The ns-3 worker process as the bridge sees it: its command line, its errors, and a long-lived JSON-lines
conversation (online mode). The worker itself lives in ``ns3_scenarios.worker``; the request and answer
formats are documented in ``ns3_scenarios/README.md``."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

from ns3_scenarios.scenario import ScenarioConfig
from ns3_scenarios.worker import PROGRESS_PREFIX

STDERR_TAIL_LINES = 15
Progress = Callable[[dict], None] | None  # hears {"slots_done", "slots", "sim_s", "events"}


class WorkerError(RuntimeError):
    """The ns-3 worker failed to start, died, or hung."""


def worker_command(*args: str) -> list[str]:
    """The command line of an ns-3 worker process (tests replace it to simulate a hang)."""
    return [sys.executable, "-m", "ns3_scenarios.worker", *args]


def describe_worker(scenario: ScenarioConfig, seed: int) -> str:
    """Names the scenario in worker errors."""
    return (f"ns-3 worker for {scenario.devices} devices, density {scenario.density}, {scenario.transport}, "
            f"mobility {scenario.mobility}, fading {scenario.fading}, seed {seed}")


def stderr_tail(text: str | bytes | None) -> str:
    """The last lines of a worker's stderr worth quoting in an error."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = (text or "").strip().splitlines()
    # cppyy answers a fatal signal with "*** Break ***" and a long thread backtrace that would bury
    # ns-3's own message (msg=..., NS_FATAL): quote what came before it.
    cut = next((i for i, line in enumerate(lines) if "*** Break ***" in line), len(lines))
    return "\n".join(lines[:cut][-STDERR_TAIL_LINES:]) or "(no stderr)"


def exit_description(code: int) -> str:
    """``exited with code C``, naming the signal when one killed the worker (SIGKILL: usually memory)."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    likely = ": the kernel's out-of-memory killer, or someone's kill" if -code == signal.SIGKILL else ""
    return f"exited with code {code} (killed by {name}{likely})"


def run_offline(command: list[str], where: str, timeout_s: float, progress: Progress = None) -> None:
    """Run an offline worker to its end, passing its progress lines (stdout) to ``progress``; WorkerError
    when it cannot start, hangs past ``timeout_s`` or exits with an error."""
    stderr = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    except OSError as error:
        raise WorkerError(f"{where} failed to start: {error}") from error

    def tail() -> str:
        stderr.seek(0)
        return stderr_tail(stderr.read())

    give_up, pending = time.monotonic() + timeout_s, b""
    with stderr, process:
        stdout = process.stdout.fileno()
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                process.kill()
                process.wait()
                raise WorkerError(f"{where} hung past {timeout_s:.0f} s; last stderr:\n{tail()}")
            if not select.select([stdout], [], [], min(left, 1.0))[0]:
                continue
            chunk = os.read(stdout, 1 << 16)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if text.startswith(PROGRESS_PREFIX) and progress is not None:
                    progress(json.loads(text[len(PROGRESS_PREFIX):]))
        code = process.wait()
        if code != 0:
            raise WorkerError(f"{where} {exit_description(code)}; last stderr:\n{tail()}")


class WorkerProcess:
    """A long-lived ns-3 worker speaking JSON lines; every answer must come within ``timeout_s``."""

    def __init__(self, hello: dict, where: str, timeout_s: float):
        self._where = where
        self._timeout_s = timeout_s
        self._stderr = tempfile.TemporaryFile()
        self._buffer = b""
        try:
            self._process = subprocess.Popen(worker_command("--serve"), stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=self._stderr)
        except OSError as error:
            raise WorkerError(f"{where} failed to start: {error}") from error
        self.hello = self.ask(hello)

    def ask(self, message: dict) -> dict:
        try:
            self._process.stdin.write((json.dumps(message) + "\n").encode())
            self._process.stdin.flush()
        except BrokenPipeError:
            self._died()
        return json.loads(self._read_line())

    def _read_line(self) -> bytes:
        give_up = time.monotonic() + self._timeout_s
        stdout = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = give_up - time.monotonic()
            if left <= 0:
                self.close()
                raise WorkerError(f"{self._where} hung past {self._timeout_s:.0f} s; last stderr:\n"
                                  f"{self._stderr_tail()}")
            if select.select([stdout], [], [], left)[0]:
                chunk = os.read(stdout, 1 << 20)
                if not chunk:
                    self._died()
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _died(self) -> None:
        code = self._process.wait()
        raise WorkerError(f"{self._where} {exit_description(code)}; last stderr:\n{self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        return stderr_tail(self._stderr.read())

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.close()
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()

    def __del__(self) -> None:
        if getattr(self, "_process", None) is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
