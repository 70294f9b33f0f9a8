"""Progress while ns-3 works: a bar with an ETA on a terminal (captured through a pseudo-terminal), a log line
per 5 % elsewhere, and a sweep that says up front what it reuses and what it makes."""

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from helpers import run_dirs

ROOT = Path(__file__).resolve().parents[1]
NS3_RUN = ('name = "progress"\nrounds = 40\ndevices = 4\n[data]\ndataset = "digits"\n'
           '[network]\nlink_model = "ns3"\ndensity = 0.8\n')


def _in_a_terminal(command: list[str], cwd: Path, timeout_s: float = 300) -> str:
    """Run ``command`` with stdout and stderr on a pseudo-terminal, as a user's shell would; return what it drew."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, cwd=cwd, stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    drawn = b""
    while True:
        ready = select.select([leader], [], [], timeout_s)[0]
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        drawn += chunk
    process.wait(timeout=30)
    os.close(leader)
    return drawn.decode(errors="replace")


@pytest.mark.ns3
def test_a_run_over_ns3_draws_a_trace_bar_with_an_eta_on_a_terminal(tmp_path):
    (tmp_path / "run.toml").write_text(NS3_RUN)
    drawn = _in_a_terminal([sys.executable, "-m", "experiments.cli", "run", str(tmp_path / "run.toml"),
                            "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")], ROOT)
    assert "run dpsgd-" in drawn, drawn[-2000:]
    bars = [line for line in re.split(r"[\r\n]", drawn) if line.startswith("ns-3 trace:")]
    assert bars and "40/40" in bars[-1], drawn[-2000:]
    assert any(re.search(r"\[\d\d:\d\d<\d\d:\d\d", bar) for bar in bars)  # elapsed<remaining: the ETA
    assert any("M events/s" in bar for bar in bars)


@pytest.mark.ns3
def test_a_run_over_ns3_logs_its_trace_progress_when_not_on_a_terminal(tmp_path):
    (tmp_path / "run.toml").write_text(NS3_RUN)
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "run", str(tmp_path / "run.toml"),
                           "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path / "results")
    positions = (run_dir / "positions.csv").read_text().splitlines()
    assert positions[0] == "round,node,role,x_m,y_m" and len(positions) == 1 + 4  # static: once per device
    assert (run_dir / "topology.png").stat().st_size > 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("[nsdml] ns-3 trace:")]
    assert lines[-1].startswith("[nsdml] ns-3 trace: 40 of 40 slots (100 %)") and "s left" in lines[-1]
    percents = [int(re.search(r"\((\d+) %\)", line).group(1)) for line in lines]
    assert percents == sorted(set(percents)) and len(lines) <= 21  # at most one line per further 5 %


def test_a_sweep_says_what_it_reuses_and_makes_before_it_starts(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('rounds = 3\ndevices = 4\nseed = [0, 1]\n[sweep]\nname = "upfront"\n[data]\n'
                    'dataset = "digits"\n[algorithm]\nname = ["dpsgd", "hyperprism-fixed"]\n'
                    '[network]\nlink_model = "synthetic"\n')
    args = ["sweep", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--workers", "1"]
    assert main(args) == 0
    assert "[sweep upfront] 0 runs reused, 4 to run; 0 link traces cached, 2 to simulate" in capsys.readouterr().err
    assert main(args) == 0
    assert "[sweep upfront] 4 runs reused, 0 to run; 0 link traces cached, 0 to simulate" in capsys.readouterr().err
