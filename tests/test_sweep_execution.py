"""Sweep execution: local pool, Ray, and resuming after SIGINT / SIGKILL give the same CSVs.

The runs use the named ``synthetic`` link model: what is tested here is the
execution machinery, not the network.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.run.run_writer import run_lock
from experiments.run.sweep import load_sweep, run_sweep

# Shares the session's Ray cluster with the other Ray module: one pytest-xdist process starts it and stops it.
pytestmark = pytest.mark.xdist_group("ray")

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
    # The sweep runs in order on one worker. Holding the fifth run's lock stops it there whatever the machine's
    # speed, so the signal lands in the fourth run or while the sweep waits for the fifth, never after the end.
    with run_lock(tmp_path / "results", sweep.runs[4][1].run_id, on_wait=print):
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
        deadline = time.monotonic() + 300
        while len(_finished(tmp_path / "results")) < 3 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        os.killpg(process.pid, signal_number)
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # it went on waiting for the fifth run: the signal was lost
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the sweep did not stop on signal {signal_number}: {process.communicate()[1][-2000:]!r}")
    before = _finished(tmp_path / "results")
    assert len(before) in (3, 4), f"the interruption must land mid-sweep; stderr: {stderr[-2000:]!r}"
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


def test_the_same_sweep_on_a_ray_instance_gives_identical_csvs(reference, ray_cluster, tmp_path):
    sweep, expected = reference
    summary = run_sweep(sweep, tmp_path / "results", tmp_path / "cache", ray_address=ray_cluster, quiet=True)
    assert list(summary["status"]) == ["done"] * 8
    assert _outputs(tmp_path / "results", sweep) == expected

