"""Ctrl-C on the test suite leaves no process behind: the Ray cluster fixture, interrupted while a test holds
it, stops every Ray process it started (the head, the second node and their workers)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import processes_mentioning

pytest.importorskip("ray")

HOLD = '''import pathlib, time
def test_hold(ray_cluster):
    pathlib.Path("ready").write_text(ray_cluster)
    time.sleep(600)
'''


def test_ctrl_c_while_a_test_holds_the_ray_cluster_stops_every_ray_process(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_hold.py").write_text(HOLD)
    suite = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "1",
                              "test_hold.py"], cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "ready").exists():
            assert suite.poll() is None and time.monotonic() < deadline, suite.stdout.read().decode()[-3000:]
            time.sleep(1)
        port = (tmp_path / "ready").read_text().rsplit(":", 1)[1]
        assert processes_mentioning(f"gcs_server_port={port}")  # the cluster is up
        os.killpg(suite.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole process group
        suite.wait(timeout=180)
        left = []
        for _ in range(30):  # Ray's processes may take a moment to exit after `ray stop`
            left = processes_mentioning(f"gcs_server_port={port}", f"127.0.0.1:{port}")
            if not left:
                break
            time.sleep(1)
        assert not left, left
    finally:
        if suite.poll() is None:
            os.killpg(suite.pid, signal.SIGKILL)
