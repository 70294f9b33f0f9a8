"""Test options: ``--algorithm module:Class`` runs the algorithm contract tests against your own class.

Ctrl-C is restored to Python's default for the session: a shell that starts the suite in the background
(``make test &``) hands it SIGINT ignored, which every subprocess would inherit, and the interruption
tests would then measure the shell, not nsdml.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption("--algorithm", action="append", default=[],
                     help="run tests/test_contract.py against this algorithm (registered name, entry point or "
                          "module:Class); repeatable; default: every registered algorithm")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster for the session: a head node and a second node joined to it (one CPU each, so the
    tasks spread over both), stopped afterwards."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray is None:
        pytest.fail("ray is a pinned dependency; `make setup` installs it")
    port = _free_port()
    # A short directory of its own, not pytest's: Ray's socket paths under it must stay within the 107 bytes
    # of an AF_UNIX address, which /tmp/pytest-of-<user>/pytest-<n>/popen-gw<k>/... can exceed.
    temp = tempfile.mkdtemp(prefix="ray-")
    # Ray starts its workers at nice 15; beside the other pytest-xdist process they would then wait minutes.
    environment = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_worker_niceness="0")
    try:
        subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                        "--disable-usage-stats", f"--temp-dir={temp}"], check=True, capture_output=True,
                       env=environment, timeout=180)
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--disable-usage-stats"],
                       check=True, capture_output=True, env=environment, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:  # also when a start failed: a head left running would outlive the session
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=environment, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
