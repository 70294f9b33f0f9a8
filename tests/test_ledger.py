"""One ledger for time and energy (messages/ledger.py, experiments/run/energy.py): every radio is charged for
exactly the time its clock counts, in one state at a time, under every schedule and link model; and every
schedule sends at the same offsets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bridge import obtain_trace
from bridge.controls import control_trace
from bridge.ladder import LADDER_MODELS, ladder_trace
from bridge.link_source import obtain_barrier_trace
from bridge.messages import DelayMessages
from bridge.trace import LinkTrace
from experiments.cli import main
from experiments.run.energy import EnergyMeter
from helpers import run_dirs
from messages.ledger import IDLE, RADIO_STATES, RX, SLEEP, TX, Power, between_cuts, busy_within
from messages.schedules import FreeRunning, Plan, schedule_of, send_offsets
from ns3_scenarios.airtime import message_radio_s, message_s
from ns3_scenarios.scenario import ScenarioConfig

# Its tests share a costly module fixture (runs over ns-3): one pytest-xdist process builds it once.
pytestmark = pytest.mark.xdist_group("test_ledger")

CSV_RTOL = 2e-7  # run files keep 8 significant digits (5e-8 relative each) (experiments.run.run_outputs.CSV_FLOAT_FORMAT)
POWER = Power(supply_voltage_v=3.0, tx_current_a=0.380, rx_current_a=0.313, idle_current_a=0.273,
              sleep_current_a=0.033, compute_power_w=3.0)


def test_between_cuts_interpolates_each_state_and_sums_to_the_window():
    at_cuts = np.array([[[0.1, 0.2, 0.7, 0.0]], [[0.1, 0.3, 1.1, 0.0]]])  # one device, cut at 1.0 s and 1.5 s
    cuts = np.array([1.0, 1.5])
    np.testing.assert_allclose(between_cuts(cuts, at_cuts, 1.0), at_cuts[0])  # at a cut: the recorded split
    np.testing.assert_allclose(between_cuts(cuts, at_cuts, 1.5), at_cuts[1])
    np.testing.assert_allclose(between_cuts(cuts, at_cuts, 1.25), [[0.1, 0.25, 0.9, 0.0]])  # halfway between
    np.testing.assert_allclose(between_cuts(cuts, at_cuts, 0.5), [[0.05, 0.1, 0.35, 0.0]])  # from 0 to the first
    # Equal cuts (every message arrived at the deadline) and ns-3's nanosecond rounding: rescaled to the window.
    rounded = at_cuts[1] * (1.5 - 1e-9) / 1.5
    np.testing.assert_allclose(between_cuts(np.array([1.5, 1.5]), np.stack([rounded, rounded]), 1.5).sum(), 1.5,
                               rtol=1e-15)


def test_busy_within_keeps_one_state_at_a_time():
    states = busy_within(np.array([0.1, 0.6]), np.array([0.2, 0.6]), np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    np.testing.assert_allclose(states[0], [0.1, 0.2, 0.7, 1.0])  # the rest of the awake time idle, then asleep
    np.testing.assert_allclose(states[1], [0.5, 0.5, 0.0, 1.0])  # 1.2 s busy in 1 s awake: scaled down
    np.testing.assert_allclose(states.sum(axis=1), 2.0)


def _hand_trace(done_s: np.ndarray, radio_s: np.ndarray, radio_deadline_s: np.ndarray, clock_end_s: float,
                deadline_s: float = 1.5) -> LinkTrace:
    n = done_s.shape[0]
    return LinkTrace(done_s=done_s[None, None].astype(np.float32), rx_bytes=np.where(np.isnan(done_s), 0, 1000)[None, None],
                     radio_s=radio_s[None, None], radio_deadline_s=radio_deadline_s[None, None],
                     clock_end_s=np.array([[clock_end_s]]), positions=np.zeros((1, n, 2), np.float32),
                     idle_delivered=~np.eye(n, dtype=bool), payload_bytes=(1000,), deadline_s=deadline_s)


def test_a_rounds_round_with_a_straggler_charges_the_wait_idle_and_not_the_drain():
    """4 devices, one 5x slower: every radio listens through the slowest compute (0.25 s), then the exchange
    lasts until its last message (0.8 s); what ns-3 simulated after that (to the deadline, and the drain) is
    not charged. Hand-computed joules."""
    done = np.full((4, 4), 0.5)
    done[3, 0] = 0.8  # the last message
    np.fill_diagonal(done, np.nan)
    at_end = np.array([[0.1, 0.3, 0.4, 0.0], [0.1, 0.2, 0.5, 0.0], [0.1, 0.2, 0.5, 0.0], [0.1, 0.1, 0.6, 0.0]])
    at_deadline = at_end + np.array([0.0, 0.0, 0.7, 0.0])
    trace = _hand_trace(done, at_end, at_deadline, clock_end_s=0.8)
    step_s = np.array([0.05, 0.05, 0.05, 0.25])
    meter = EnergyMeter(trace, 4, POWER, step_s, battery_j=0.0)
    links = meter.links(trace.round_links(0))
    links.exchange(1000)
    assert links.windows_s == [pytest.approx(0.8)]
    row = meter.charge_round(0, listen_s=meter.slowest_step_s(step_s), windows_s=links.windows_s, local_steps=1)
    expected_s = at_end + np.array([0.0, 0.0, 0.25, 0.0])  # the wait for the straggler, idle
    np.testing.assert_allclose(meter.radio_s, expected_s, rtol=1e-6)  # done_s is float32
    np.testing.assert_allclose(meter.clock_s, 1.05, rtol=1e-6)
    np.testing.assert_allclose(meter.radio_s.sum(axis=1), meter.clock_s, rtol=1e-12)
    volts = 3.0
    device_0 = volts * (0.380 * 0.1 + 0.313 * 0.3 + 0.273 * 0.65) + 3.0 * 0.05  # 1.07805 J
    straggler = volts * (0.380 * 0.1 + 0.313 * 0.1 + 0.273 * 0.85) + 3.0 * 0.25  # 1.65405 J
    assert meter.spent_j[0] == pytest.approx(device_0, rel=1e-6)
    assert meter.spent_j[3] == pytest.approx(straggler, rel=1e-6)
    assert row["compute_s"] == pytest.approx(0.40) and row["radio_idle_s"] == pytest.approx(2.0 + 4 * 0.25, rel=1e-6)
    # The old rule (the slot's deadline + drain, 1.6 s; the wait never) would have charged device 0 more.
    assert volts * (0.380 * 0.1 + 0.313 * 0.3 + 0.273 * 1.2) + 3.0 * 0.05 > device_0


def test_rounds_and_the_local_barrier_charge_the_same_joules_when_their_intervals_coincide(tmp_path):
    """On the ideal control with no send jitter, equal compute and quorum 1, every device's barrier falls at the
    moment the round's exchange ends: the two schedules count the same intervals and charge the same joules."""
    scenario = ScenarioConfig(devices=4, density=1.0, start_jitter_s=0.0)
    payload, steps = 5_000, 3
    rounds_trace = control_trace("ideal", scenario, (payload,), steps, 5)
    plan = Plan(schedule="local_barrier", steps=steps, payload_bytes=(payload,), step_s=(0.1,) * 4, timeout_s=1.5,
                quorum=1.0, send_jitter_s=0.0, seed=5)
    barrier_trace, _ = obtain_barrier_trace("ideal", scenario, plan, 5, tmp_path)
    rounds = EnergyMeter(rounds_trace, 4, POWER, 0.1, battery_j=0.0)
    barrier = EnergyMeter(barrier_trace, 4, POWER, 0.1, battery_j=0.0)
    for step in range(steps):
        window = rounds_trace.exchange_end_s(step, 0)
        by_rounds = rounds.charge_round(step, 0.1, [window], local_steps=1)
        by_barrier = barrier.charge_step(step, local_steps=1)
        assert by_rounds == pytest.approx(by_barrier, rel=1e-6)
    np.testing.assert_allclose(rounds.clock_s, barrier.clock_s, rtol=1e-6)
    np.testing.assert_allclose(rounds.radio_s, barrier.radio_s, rtol=1e-6)
    np.testing.assert_allclose(rounds.spent_j, barrier.spent_j, rtol=1e-6)
    assert rounds.radio_s[:, TX].min() > 0 and rounds.radio_s[:, RX].min() > 0


def test_every_schedule_sends_at_the_same_offsets_on_a_control():
    """Rounds, the local barrier and async over the ideal control: each message leaves the keyed offset
    (``send_offsets``) after its sender's compute ends."""
    scenario = ScenarioConfig(devices=5, density=1.0)
    seed, steps, payload = 11, 4, 3_000
    offsets = send_offsets(seed, steps, 1, 5, scenario.start_jitter_s)[:, 0]
    alone = message_s(payload, scenario.datagram_bytes, scenario.phy_mode, scenario.datagram_interval_s)
    rounds = control_trace("ideal", scenario, (payload,), steps, seed)
    sent_by_rounds = np.nanmax(rounds.done_s[:, 0], axis=2) - alone  # a message completes `alone` after it left
    np.testing.assert_allclose(sent_by_rounds, offsets, atol=1e-6)
    step_s = np.array([0.05, 0.05, 0.1, 0.2, 0.05])
    for schedule, extra in (("local_barrier", dict(timeout_s=1.5, quorum=0.5)), ("async", dict(timeout_s=0.0))):
        plan = Plan(schedule=schedule, steps=steps, payload_bytes=(payload,), step_s=tuple(step_s),
                    send_jitter_s=scenario.start_jitter_s, seed=seed, **extra)
        messages = DelayMessages(scenario, control_trace("ideal", scenario, (payload,), steps, seed))
        log = schedule_of(plan).run(messages, lambda step, exchange: ~np.eye(5, dtype=bool))
        compute_end = np.vstack([np.zeros((1, 5)), log["finished_s"][:-1, 0]]) + step_s
        np.testing.assert_allclose(log["sent_s"][:, 0] - compute_end, offsets, atol=1e-9, err_msg=schedule)


def test_a_controls_message_core_splits_each_radios_time_exactly():
    scenario = ScenarioConfig(devices=4, density=1.0)
    messages = DelayMessages(scenario, control_trace("ideal", scenario, (5_000,), 2, 0))
    messages.send(0, 0.1, 5_000, 0, 0)
    messages.send(1, 0.1, 5_000, 0, 0)
    messages.sleep_between(0, 0.0, 1.0)  # asleep only once its own message is out
    messages.advance(0.5)
    messages.advance(0.5)
    seconds = messages.radio_seconds()
    np.testing.assert_allclose(seconds.sum(axis=1), messages.now_s(), rtol=1e-12)
    data_s, _ = message_radio_s(5_000, scenario.datagram_bytes, scenario.phy_mode)
    assert seconds[0, TX] == pytest.approx(data_s) and seconds[0, SLEEP] == pytest.approx(
        0.5 - (0.1 + message_s(5_000, scenario.datagram_bytes, scenario.phy_mode, scenario.datagram_interval_s)))


RUN = """name = "ledger"
seed = 2
rounds = 3
devices = 6
[data]
dataset = "digits"
[algorithm]
name = "{algorithm}"
lr = 0.1
[network]
link_model = "{link_model}"
density = 0.8
schedule = "{schedule}"
compute_model = "stragglers"
compute_power_w = 2.5
{extra}
"""

CASES = {  # (algorithm, link_model, schedule, extra)
    "rounds-ns3": ("dpsgd", "ns3", "rounds", ""),
    "rounds-control": ("dpsgd", "ideal", "rounds", ""),
    "rounds-rung": ("dpsgd", "ns3_ideal", "rounds", ""),
    "rounds-access-point": ("fedavg", "ns3", "rounds", 'topology = "access_point"'),
    "barrier-ns3": ("dpsgd", "ns3", "local_barrier", "radio_sleep = true"),
    "barrier-control": ("dpsgd", "ideal", "local_barrier", "radio_sleep = true"),
    "async-ns3": ("async_dpsgd", "ns3", "async", ""),
    "async-control": ("async_dpsgd", "ideal", "async", ""),
}


@pytest.fixture(scope="module")
def ledger_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ledger")
    runs = {}
    for case, (algorithm, link_model, schedule, extra) in CASES.items():
        path = root / f"{case}.toml"
        path.write_text(RUN.format(algorithm=algorithm, link_model=link_model, schedule=schedule, extra=extra))
        results = root / "results" / case
        assert main(["run", str(path), "--results", str(results), "--cache", str(root / "cache"), "--quiet"]) == 0
        [runs[case]] = run_dirs(results)
    return root, runs


@pytest.mark.ns3
@pytest.mark.parametrize("case", list(CASES))
def test_every_radio_is_charged_for_exactly_the_time_its_clock_counts(ledger_runs, case):
    """Per device and evaluated round: the radio states sum to the device's clock, and its joules are the
    states at the currents plus its compute at the compute power; the totals are the devices' sums. To the
    CSVs' 8 significant digits (the meter itself holds them to 1e-12: the hand-computed case above)."""
    _, runs = ledger_runs
    run_dir = runs[case]
    scenario = ScenarioConfig(devices=6, density=0.8, **({"topology": "access_point"} if "access" in case else {}))
    power = replace(Power.of(scenario), compute_power_w=2.5)
    devices = pd.read_csv(run_dir / "device_metrics.csv")
    states = devices[[f"radio_{state}_s" for state in RADIO_STATES]].to_numpy()
    np.testing.assert_allclose(states.sum(axis=1), devices["clock_s"], rtol=CSV_RTOL)
    np.testing.assert_allclose(devices["energy_j"], power.radio_j(states) + power.compute_j(devices["compute_s"]),
                               rtol=CSV_RTOL)
    assert (devices["clock_s"] <= devices["sim_time_s"] + 1e-9).all()  # async: a device's last step by then
    assert (devices.loc[devices["round"] == devices["round"].max(), "clock_s"] > 0).all()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    last = devices[devices["round"] == devices["round"].max()]
    row = metrics[metrics["round"] == devices["round"].max()].iloc[0]
    assert row["cumulative_energy_j"] == pytest.approx(last["energy_j"].sum(), rel=CSV_RTOL)
    for k, state in enumerate(RADIO_STATES):
        assert row[f"radio_{state}_s"] == pytest.approx(states[last.index - devices.index[0], k].sum(), rel=CSV_RTOL)
    if "rounds" in case:  # every device's clock is the round's
        np.testing.assert_allclose(last["clock_s"], row["sim_time_s"], rtol=CSV_RTOL)
    if "barrier" in case:
        assert last["radio_sleep_s"].min() > 0


@pytest.mark.ns3
@pytest.mark.parametrize("case", ["barrier-ns3", "async-ns3"])
def test_ns3s_radio_seconds_are_what_its_energy_sources_lost(ledger_runs, case):
    """The message core's split by state, over the whole schedule, at the currents: each source's depletion."""
    root, runs = ledger_runs
    record = json.loads((runs[case] / "run.json").read_text())
    meta = json.loads((root / "cache" / record["trace_key"] / "meta.json").read_text())
    scenario = ScenarioConfig(devices=6, density=0.8, radio_sleep="barrier" in case)
    split = Power.of(scenario).radio_j(np.array(meta["radio_total_s"]))
    np.testing.assert_allclose(split, meta["source_depletion_j"], rtol=1e-6)
    devices = pd.read_csv(runs[case] / "device_metrics.csv")
    charged = devices[devices["round"] == devices["round"].max()]["clock_s"].to_numpy()
    assert (np.array(meta["radio_total_s"]).sum(axis=1) >= charged - 1e-6).all()  # the clock counts within it


@pytest.mark.ns3
def test_a_rung_charges_ns3s_timeline_over_its_own_clock(ledger_runs):
    _, runs = ledger_runs
    ns3, rung = (pd.read_csv(runs[case] / "metrics.csv") for case in ("rounds-ns3", "rounds-rung"))
    # Same trace, same compute: the rung's round ends when its last message does, the ns-3 round likewise or
    # at the deadline; the mean power (J/s) stays within a few percent, the joules follow the seconds.
    watts = [m["energy_j"].iloc[1:] / m["sim_time_s"].diff().iloc[1:] for m in (ns3, rung)]
    np.testing.assert_allclose(watts[0], watts[1], rtol=0.1)


@pytest.mark.ns3
def test_along_the_ladder_the_joules_follow_each_rungs_seconds(tmp_path):
    """A 2-round ladder from one ns-3 trace: every rung is charged ns-3's timeline over its own clock, so
    its mean power (J / step over s / step) stays within 10 % of every other rung's, however long its
    exchanges last."""
    scenario = ScenarioConfig(devices=8, density=0.5)
    source, _ = obtain_trace("ns3", scenario, (14_000,), 2, 3, tmp_path)
    rungs = {name: ladder_trace(name, source, 3) for name in LADDER_MODELS if name != "ns3"} | {"ns3": source}
    watts, seconds = {}, {}
    for name, trace in rungs.items():
        meter = EnergyMeter(trace, 8, POWER, 0.05, battery_j=0.0)
        windows = [trace.exchange_end_s(r, 0) for r in range(2)]
        for r, window in enumerate(windows):
            meter.charge_round(r, 0.05, [window], local_steps=1)
        seconds[name] = meter.clock_s[0]
        watts[name] = meter.spent_j.sum() / seconds[name]
        np.testing.assert_allclose(meter.radio_s.sum(axis=1), meter.clock_s, rtol=1e-12)
    assert max(seconds.values()) > 1.05 * min(seconds.values())  # the rungs' clocks differ
    assert max(watts.values()) < 1.1 * min(watts.values()), watts
