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
    if ray is None:  # an extra: `make setup` installs it unless EXTRAS leaves it out
        pytest.skip("Ray is not installed (the ray extra: pip install -e '.[ray]')")
    port = _free_port()
    # A short directory of its own, not pytest's: Ray's socket paths under it must stay within the 107 bytes
    # of an AF_UNIX address, which /tmp/pytest-of-<user>/pytest-<n>/popen-gw<k>/... can exceed.
    temp = tempfile.mkdtemp(prefix="ray-")
    # Ray starts its workers at nice 15; beside the other pytest-xdist process they would then wait minutes.
    environment = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_worker_niceness="0")
    # A reaper outside the session's process group outlives this worker however it ends (Ctrl-C, or xdist
    # stopping it before the finally below completes) and then kills whatever of this cluster is left.
    reaper = subprocess.Popen([sys.executable, "-c", REAPER, str(os.getpid()), temp, f"gcs_server_port={port}",
                               f"127.0.0.1:{port}"], start_new_session=True)
    try:
        # Both nodes on the loopback address the driver connects to: a node that registered under the host's
        # own address was once not found from 127.0.0.1 ("No node info found matching attributes").
        subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                        "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={temp}"], check=True,
                       capture_output=True, env=environment, timeout=180)
        subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                        "--disable-usage-stats"], check=True, capture_output=True, env=environment, timeout=180)
        yield f"127.0.0.1:{port}"
    finally:  # also when a start failed: a head left running would outlive the session
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=environment, timeout=120)
        # A Ctrl-C reaches Ray's daemons too (one process group); one caught mid-shutdown can outlive `ray stop`.
        _kill_processes_mentioning(temp, f"gcs_server_port={port}", f"127.0.0.1:{port}")
        shutil.rmtree(temp, ignore_errors=True)
        reaper.kill()


REAPER = """
import os, shutil, signal, sys, time
watched, temp, texts = int(sys.argv[1]), sys.argv[2], sys.argv[2:]
while True:
    try:
        os.kill(watched, 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
for entry in os.listdir("/proc"):
    try:
        command = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
        if entry.isdigit() and int(entry) != os.getpid() and any(text in command for text in texts):
            os.kill(int(entry), signal.SIGKILL)
    except OSError:
        pass
shutil.rmtree(temp, ignore_errors=True)
"""


def processes_mentioning(*texts: str) -> list[int]:
    """The pids whose command line contains any of ``texts`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(text in command for text in texts):
            found.append(int(entry.name))
    return found


def _kill_processes_mentioning(*texts: str) -> None:
    for pid in processes_mentioning(*texts):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # gone meanwhile
            pass
