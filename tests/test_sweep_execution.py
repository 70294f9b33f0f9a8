"""Sweep execution: local pool, Ray, and resuming after SIGINT / SIGKILL give the same CSVs.

The runs use the named ``synthetic`` link model: what is tested here is the
execution machinery, not the network.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bridge import obtain_trace
from bridge.trace import ARRAYS
from experiments.runner import trace_request
from experiments.sweep import load_sweep, make_traces, run_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """
seed = [0, 1]
rounds = 25
devices = 6

[sweep]
name = "exec"
target_accuracy = 0.3

[data]
dataset = "digits"
alpha = [0.5, 5.0]

[algorithm]
name = "dpsgd"
lr = 0.2

[network]
link_model = "synthetic"
density = [0.4, 0.8]
"""
VARIABLE = ["wall_s"]  # the only summary column allowed to differ between executions


def _sweep_file(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    return path


def _outputs(results: Path, sweep) -> dict[str, str]:
    """Every run's CSVs byte for byte, plus the summary without its wall-clock column."""
    files = {}
    for _, config in sweep.runs:
        for name in ("metrics.csv", "links.csv", "devices.csv", "config.toml"):
            files[f"{config.run_id}/{name}"] = (results / config.run_id / name).read_text()
    summary = pd.read_csv(results / "sweeps" / "exec" / "summary.csv").drop(columns=VARIABLE)
    files["summary"] = summary.to_csv(index=False)
    files["table.md"] = (results / "sweeps" / "exec" / "table.md").read_text()
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep, run in this process."""
    tmp = tmp_path_factory.mktemp("reference")
    sweep = load_sweep(_sweep_file(tmp))
    run_sweep(sweep, tmp / "results", tmp / "cache", workers=1, quiet=True)
    return sweep, _outputs(tmp / "results", sweep)


def test_a_local_process_pool_gives_identical_csvs(reference, tmp_path):
    sweep, expected = reference
    summary = run_sweep(sweep, tmp_path / "results", tmp_path / "cache", workers=2, quiet=True)
    assert list(summary["status"]) == ["done"] * 8
    assert _outputs(tmp_path / "results", sweep) == expected


def _statuses(results: Path) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"] for p in results.glob("*/run.json")}


def _finished(results: Path) -> dict[str, float]:
    return {run: (results / run / "metrics.csv").stat().st_mtime_ns
            for run, status in _statuses(results).items() if status in ("done", "diverged")}


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_sweep_resumes_only_the_missing_runs(reference, tmp_path, signal_number):
    sweep, expected = reference
    command = [sys.executable, "-m", "experiments.cli", "sweep", str(_sweep_file(tmp_path)), "--results",
               str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), "--workers", "1", "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_finished(tmp_path / "results")) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal_number)
    _, stderr = process.communicate(timeout=120)
    before = _finished(tmp_path / "results")
    assert 3 <= len(before) < 8, f"the interruption must land mid-sweep; stderr: {stderr[-2000:]!r}"
    if signal_number == signal.SIGINT:
        assert process.returncode == 130 and b"run the same command again" in stderr, stderr[-2000:]
    unfinished = {run: status for run, status in _statuses(tmp_path / "results").items() if run not in before}
    for run, status in unfinished.items():  # the run cut short keeps its rows, readable, and says so
        # SIGINT is caught and recorded as "interrupted" (or leaves "running" if it lands while the run
        # directory is being created); SIGKILL always leaves "running". Both count as unfinished.
        assert status in (("interrupted", "running") if signal_number == signal.SIGINT else ("running",))
        metrics = tmp_path / "results" / run / "metrics.csv"
        if metrics.exists():  # absent only when the signal landed before round 0 was written
            rows = pd.read_csv(metrics)
            assert list(rows["round"]) == list(range(len(rows)))

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = _finished(tmp_path / "results")
    assert len(after) == 8
    assert {run: after.get(run) for run in before} == before, resumed.stderr[-2000:]  # not recomputed
    assert [p.name for p in (tmp_path / "results").glob(".*")] == [".locks"]  # no half-written staging left
    assert _outputs(tmp_path / "results", sweep) == expected


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster for this module: a head node and a second node joined to it (one CPU each, so the
    tasks spread over both), stopped afterwards."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray is None:
        pytest.fail("ray is a pinned dependency; `make setup` installs it")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    environment = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                    "--disable-usage-stats", f"--temp-dir={temp}"], check=True, capture_output=True,
                   env=environment, timeout=180)
    subprocess.run([ray, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--disable-usage-stats"],
                   check=True, capture_output=True, env=environment, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=environment, timeout=120)


def test_the_same_sweep_on_a_ray_instance_gives_identical_csvs(reference, ray_cluster, tmp_path):
    sweep, expected = reference
    summary = run_sweep(sweep, tmp_path / "results", tmp_path / "cache", ray_address=ray_cluster, quiet=True)
    assert list(summary["status"]) == ["done"] * 8
    assert _outputs(tmp_path / "results", sweep) == expected


CHUNKED = """
seed = 0
rounds = 4
devices = 6

[sweep]
name = "chunked"
target_accuracy = 0.3

[data]
dataset = "digits"
alpha = 5.0

[algorithm]
name = "dpsgd"
lr = 0.2

[network]
link_model = "ns3"
trace_chunk_rounds = 2
"""


def _chunked_trace(tmp_path: Path, **execution) -> dict:
    """The sweep's ns-3 trace made by ``make_traces`` (its chunks as tasks, then the join), as arrays."""
    tmp_path.mkdir()
    (tmp_path / "chunked.toml").write_text(CHUNKED)
    sweep = load_sweep(tmp_path / "chunked.toml")
    configs = [config for _, config in sweep.runs]
    assert make_traces(sweep, configs, tmp_path / "cache", log=print, **execution) == 0
    trace, reused = obtain_trace(**trace_request(configs[0]), cache_dir=tmp_path / "cache")
    assert reused and trace.meta["chunks"][1]["first_slot"] == 2
    return {name: getattr(trace, name) for name in ARRAYS}


def test_a_chunked_ns3_trace_made_on_the_ray_cluster_equals_the_process_pool_s(ray_cluster, tmp_path):
    """The chunks of an ns-3 trace are tasks of their own (on the pool, on the cluster's two nodes); the joined
    traces are the same array for array."""
    on_pool = _chunked_trace(tmp_path / "pool", workers=2)
    on_ray = _chunked_trace(tmp_path / "ray", ray_address=ray_cluster)
    assert all(np.array_equal(on_pool[name], on_ray[name], equal_nan=True) for name in ARRAYS)
    assert (~np.isnan(on_pool["done_s"])).sum() > 0  # ns-3 delivered something
