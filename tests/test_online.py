"""Online-mode plumbing against a stand-in worker (tests/fake_worker.py, no ns-3): replay, resume, failures.

Real ns-3 in online mode is covered by tests/test_ns3_physics.py.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bridge.link_source
from bridge import WorkerError, obtain_trace, open_links
from bridge.online import OnlineLinks
from ns3_scenarios.scenario import ScenarioConfig
from helpers import run_dirs

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")
SCENARIO = ScenarioConfig(devices=4)


@pytest.fixture
def fake_worker(monkeypatch):
    """Route worker starts to the stand-in; returns the list of start-ups so far."""
    starts = []

    def command(*args):
        starts.append(args)
        return [sys.executable, str(FAKE_WORKER)]

    monkeypatch.setattr(bridge.worker, "worker_command", command)
    return starts


def _run(cache, payloads_per_round, exchanges=2, timeout_s=30.0):
    """Drive an online source the way the runner does; payloads_per_round[r][e] is an int or N ints."""
    source = open_links("online", "ns3", SCENARIO, (100,) * exchanges, len(payloads_per_round), 0, cache, timeout_s)
    for r, payloads in enumerate(payloads_per_round):
        links = source.round_links(r)
        for payload in payloads:
            links.exchange(payload)
    return source, source.finish()


def test_online_results_follow_each_exchanges_payloads(tmp_path, fake_worker):
    source, reused = _run(tmp_path, [(100, 2000), (300, [100, 200, 300, 400])])
    trace = source.trace
    assert not reused and len(fake_worker) == 1
    assert trace.done_s[0, 1, 0, 1] == pytest.approx(2000 / 1e5 + 1 / 1e4)
    assert trace.done_s[1, 1, 3, 0] == pytest.approx(400 / 1e5 + 3 / 1e4)
    assert trace.sender_bytes[1, 1].tolist() == [100, 200, 300, 400]
    assert trace.positions[1, 0, 0] == 2.0  # recorded at the round's first exchange (slot 2)


def test_a_rerun_sending_the_same_payloads_replays_the_cache_without_a_worker(tmp_path, fake_worker):
    plan = [(100, 2000), (300, [100, 200, 300, 400]), (100, 50)]
    first, _ = _run(tmp_path, plan)
    again, reused = _run(tmp_path, plan)
    assert reused and len(fake_worker) == 1 and again.replayed == 6 and again.simulated == 0
    for name in ("done_s", "rx_bytes", "intended", "sender_bytes", "air_bytes", "positions"):
        assert np.array_equal(getattr(again.trace, name), getattr(first.trace, name), equal_nan=True)


def test_a_run_that_diverges_resumes_ns3_after_re_simulating_the_shared_prefix(tmp_path, fake_worker):
    _run(tmp_path, [(100, 2000), (300, 400), (100, 50)])
    source, reused = _run(tmp_path, [(100, 2000), (300, 400), (100, 60)])
    assert not reused and len(fake_worker) == 2
    assert (source.replayed, source.simulated) == (5, 1)
    assert source.trace.done_s[2, 1, 0, 1] == pytest.approx(60 / 1e5 + 5 / 1e4)
    family = next(tmp_path.iterdir())
    assert len([p for p in family.iterdir() if not p.name.startswith(".")]) == 2  # one entry per payload sequence


def test_unused_exchanges_are_recorded_and_keep_later_slots_in_place(tmp_path, fake_worker):
    source, _ = _run(tmp_path, [(100,), (300, 400)])
    assert (source.trace.sender_bytes[0, 1] == -1).all() and np.isnan(source.trace.done_s[0, 1]).all()
    assert source.trace.done_s[1, 0, 0, 1] == pytest.approx(300 / 1e5 + 2 / 1e4)
    _, reused = _run(tmp_path, [(100,), (300, 400)])
    assert reused


def test_a_worker_that_dies_mid_run_raises_a_clear_error_and_caches_nothing(tmp_path, fake_worker):
    with pytest.raises(WorkerError, match="exited with code 133") as error:
        _run(tmp_path, [(100, 2000), (666, 100)])
    message = str(error.value)
    assert "4 devices" in message and "fake fatal error in slot 2" in message
    assert not list(tmp_path.rglob("meta.json"))


def test_a_hung_online_worker_raises_after_the_timeout(tmp_path, fake_worker):
    with pytest.raises(WorkerError, match="hung past 2 s") as error:
        _run(tmp_path, [(100, 777)], timeout_s=2.0)
    assert "scenario built" in str(error.value)
    assert not list(tmp_path.rglob("meta.json"))


def test_a_hung_offline_worker_raises_after_the_timeout(tmp_path, monkeypatch):
    sleeper = "import sys, time; print('loading ns-3', file=sys.stderr, flush=True); time.sleep(120)"
    monkeypatch.setattr(bridge.worker, "worker_command", lambda *args: [sys.executable, "-c", sleeper])
    with pytest.raises(WorkerError, match="hung past 2 s") as error:
        obtain_trace("ns3", SCENARIO, (100,), 1, 0, tmp_path, timeout_s=2.0)
    assert "loading ns-3" in str(error.value) and "density 0.5" in str(error.value)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_a_worker_that_cannot_start_raises_a_clear_error(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(bridge.worker, "worker_command", lambda *args: [str(tmp_path / "no-such-python")])
    with pytest.raises(WorkerError, match="failed to start") as error:
        open_links(mode, "ns3", SCENARIO, (100,), 1, 0, tmp_path / "cache")
    assert "ns-3 worker for 4 devices" in str(error.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("meta.json"))


def test_exchanges_must_go_forward_and_payloads_must_be_valid(tmp_path, fake_worker):
    source = open_links("online", "ns3", SCENARIO, (100,), 2, 0, tmp_path)
    assert isinstance(source, OnlineLinks)
    links = source.round_links(1)
    links.exchange(100)
    with pytest.raises(RuntimeError, match="go forward"):
        source.round_links(0).exchange(100)
    with pytest.raises(ValueError, match="4 ints"):
        source.round_links(1).exchange([100, 100])
    with pytest.raises(ValueError, match=r"\[0, 2\*\*31\) \(0: it sends nothing\), and one at least positive"):
        source.round_links(1).exchange(0)  # nobody sends
    source.finish()


def test_online_mode_needs_ns3():
    with pytest.raises(ValueError, match="online"):
        open_links("online", "synthetic", SCENARIO, (100,), 1, 0, Path("unused"))


def test_a_run_in_online_mode_writes_links_csv_and_a_rerun_replays_without_a_worker(tmp_path, fake_worker, capsys):
    from experiments.cli import main

    config = tmp_path / "online.toml"
    config.write_text("""
name = "online"
rounds = 3
devices = 4

[data]
dataset = "digits"

[network]
mode = "online"
""")
    args = ["run", str(config), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    assert "ns-3 worker started" in capsys.readouterr().err
    run_dir = run_dirs(tmp_path / "results")[0]
    links = pd.read_csv(run_dir / "links.csv")
    assert len(links) == 3 and (links["delivered_pairs"] == 12).all()
    payload = links["payload_bytes"].iloc[0]
    assert links["mean_completion_s"].iloc[0] == pytest.approx(payload / 1e5)  # the stand-in's slot 0
    rerun = args[:2] + ["--results", str(tmp_path / "other"), "--cache", str(tmp_path / "cache")]
    assert main(rerun) == 0  # another results root: the run is made again, its links from the cache
    assert "replaying while the payloads match" in capsys.readouterr().err
    assert len(fake_worker) == 1
    assert json.loads((run_dirs(tmp_path / "other")[0] / "run.json").read_text())["trace_reused"] is True


def test_a_damaged_online_cache_entry_is_simulated_again(tmp_path, fake_worker):
    plan = [(100, 2000), (300, 400)]
    _run(tmp_path, plan)
    entry = next(tmp_path.rglob("meta.json")).parent
    (entry / "meta.json").write_text("{not json")
    source, reused = _run(tmp_path, plan)
    assert not reused and len(fake_worker) == 2 and source.simulated == 4
    _, reused = _run(tmp_path, plan)
    assert reused
