"""Energy: ns-3's radio energy model per device and exchange, the controls' airtime estimate, compute energy,
batteries, and the energy columns of the run and sweep files."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from bridge import obtain_trace
from bridge.controls import control_trace
from experiments.cli import main
from experiments.run.energy import EnergyMeter
from helpers import run_dirs
from ns3_scenarios.airtime import ppdu_s
from messages.ledger import RADIO_STATES, Power
from ns3_scenarios.scenario import ScenarioConfig, place_devices

# Its tests share a costly module fixture (ns-3 traces or a finished run): one pytest-xdist process builds it once.
pytestmark = pytest.mark.xdist_group("test_energy")

TX, RX, IDLE = (RADIO_STATES.index(state) for state in ("tx", "rx", "idle"))
SMALL, LARGE = 2800, 28000  # 2 and 20 datagrams of 1400 bytes
# Seed 7 at density 0.2 places device 6 about 99 m from its nearest neighbour: twice the 51.5 m radio range.
ISOLATED = dict(scenario=ScenarioConfig(devices=8, density=0.2), seed=7, device=6)


def test_the_isolated_device_of_the_energy_scenario_is_out_of_everyones_range():
    scenario, seed, device = ISOLATED["scenario"], ISOLATED["seed"], ISOLATED["device"]
    positions = place_devices(scenario, seed).positions_m
    distance = np.linalg.norm(positions - positions[device], axis=1)
    assert np.delete(distance, device).min() > 1.5 * scenario.range_m


@pytest.fixture(scope="module")
def energy_traces(tmp_path_factory):
    """The same 8-device placement (one device isolated) sending a small and a large message, 2 rounds."""
    cache = tmp_path_factory.mktemp("cache")
    scenario, seed = ISOLATED["scenario"], ISOLATED["seed"]
    return {payload: obtain_trace("ns3", scenario, (payload,), 2, seed, cache)[0] for payload in (SMALL, LARGE)}


@pytest.mark.ns3
def test_ns3_radio_seconds_by_state_are_what_each_energy_source_lost(energy_traces):
    power = Power.of(ISOLATED["scenario"])
    for trace in energy_traces.values():
        split = power.radio_j(trace.radio_deadline_s)  # (rounds, exchanges, devices): start to deadline
        assert (split > 0).all()
        np.testing.assert_allclose(split, trace.source_deadline_j, rtol=1e-6)
        # ns-3 keeps time in nanoseconds, the slot's start is not on that grid: equal to within 2 ns.
        np.testing.assert_allclose(trace.radio_deadline_s.sum(-1), ISOLATED["scenario"].deadline_s, rtol=0, atol=2e-9)
        np.testing.assert_allclose(trace.radio_s.sum(-1), np.broadcast_to(trace.clock_end_s[..., None], (2, 1, 8)),
                                   rtol=0, atol=2e-9)


@pytest.mark.ns3
def test_ns3_a_larger_payload_costs_more_tx_time_in_proportion_to_its_airtime(energy_traces):
    small, large = (energy_traces[p].radio_s[..., TX] for p in (SMALL, LARGE))
    assert (large > 5 * small).all()
    scenario = ISOLATED["scenario"]
    # A broadcast datagram is one frame: TX time is its PPDU (1400 B + 64 B of headers at 24 Mbps).
    np.testing.assert_allclose(large, 20 * ppdu_s(1400 + 64, scenario.phy_mode), rtol=1e-6)


@pytest.mark.ns3
def test_ns3_a_device_out_of_everyones_range_spends_no_rx_time(energy_traces):
    device = ISOLATED["device"]
    for trace in energy_traces.values():
        assert not trace.idle_delivered[device].any() and not trace.idle_delivered[:, device].any()
        assert (trace.radio_s[:, :, device, RX] == 0).all()
        others = np.delete(trace.radio_s[..., RX], device, axis=2)
        heard = np.delete(trace.idle_delivered.any(axis=0), device)
        assert (others[..., heard] > 0).all()  # everyone who hears a neighbour spends rx time


@pytest.mark.ns3
def test_ns3_and_its_idle_control_agree_on_energy_to_a_few_percent(energy_traces):
    trace = energy_traces[LARGE]
    control = control_trace("ideal", ISOLATED["scenario"], (LARGE,), 2, ISOLATED["seed"])
    np.testing.assert_allclose(control.radio_deadline_s[..., TX], trace.radio_deadline_s[..., TX], rtol=1e-6)
    # Over the same window (start to deadline) the estimate is within 3 % of ns-3's radio timeline in joules.
    power = Power.of(ISOLATED["scenario"])
    np.testing.assert_allclose(power.radio_j(control.radio_deadline_s), power.radio_j(trace.radio_deadline_s),
                               rtol=0.03)


def test_a_control_charges_its_radios_for_the_time_its_clock_counts():
    """Every device's seconds in tx, rx, idle and sleep add up to the exchange's duration on the run's clock."""
    scenario = ScenarioConfig(devices=6, density=0.6)
    control = control_trace("ideal", scenario, (20_000,), 3, 1)
    seconds = control.radio_s.sum(-1)[:, 0]  # (rounds, devices)
    for r in range(3):
        duration = _duration_s(control, r, 20_000)
        assert 0.05 < duration < scenario.deadline_s  # the lossless control's round ends early
        assert control.clock_end_s[r, 0] == pytest.approx(duration, rel=1e-6)  # done_s is float32
        np.testing.assert_allclose(seconds[r], control.clock_end_s[r, 0], rtol=1e-12)
        np.testing.assert_allclose(control.radio_window_s(r, 0, duration).sum(-1), duration, rtol=1e-12)


def _duration_s(trace, round_index: int, payload: int) -> float:
    """How long the round's one exchange lasts on the run's clock."""
    links = trace.round_links(round_index)
    links.exchange(payload)
    return links.duration_s


def test_the_control_estimate_is_each_radios_airtime_and_the_rest_idle():
    scenario = ScenarioConfig(devices=5, density=1.0, tx_current_a=1.0, rx_current_a=0.5, idle_current_a=0.1,
                              supply_voltage_v=2.0)
    trace = control_trace("ideal", scenario, (1400,), 1, 0)
    frame = ppdu_s(1400 + 64, scenario.phy_mode)
    seconds = trace.radio_s[0, 0]
    np.testing.assert_allclose(seconds[:, TX], frame)
    np.testing.assert_allclose(seconds[:, RX], 4 * frame)  # hears its 4 neighbours
    np.testing.assert_allclose(seconds[:, IDLE], _duration_s(trace, 0, 1400) - 5 * frame, rtol=1e-6)
    joules = Power.of(scenario).radio_j(seconds)  # 2 V: 2 W in tx, 1 W in rx, 0.2 W idle
    np.testing.assert_allclose(joules, 2.0 * frame + 1.0 * 4 * frame + 0.2 * seconds[:, IDLE])


def _trace_with_idle_seconds(per_device_s: list[float], rounds: int):
    """A control trace whose radios spend ``per_device_s`` idle in each step, as a barrier schedule's log."""
    scenario = ScenarioConfig(devices=len(per_device_s), density=1.0)
    trace = control_trace("ideal", scenario, (1400,), rounds, 0)
    seconds = np.zeros_like(trace.radio_s)
    seconds[..., IDLE] = np.array(per_device_s)
    finished = np.cumsum(np.broadcast_to(np.array(per_device_s), trace.finished_s.shape), axis=0)
    return type(trace)(**{**trace.fields(), "radio_s": seconds, "finished_s": finished})


# 3 V and 1/3 A idle: a second idle is a joule.
JOULE_A_SECOND = Power(supply_voltage_v=3.0, tx_current_a=0.4, rx_current_a=0.35, idle_current_a=1 / 3,
                       sleep_current_a=0.01, compute_power_w=2.0)


def test_the_meter_charges_radio_and_compute_and_empties_batteries_at_the_capacity():
    trace = _trace_with_idle_seconds([1.0, 2.0, 3.0], rounds=5)
    meter = EnergyMeter(trace, 3, JOULE_A_SECOND, step_s=0.25, battery_j=4.5)
    rows = [meter.charge_step(r, local_steps=1) for r in range(4)]
    # Per step: radio 1, 2, 3 J plus compute 2 W x 0.25 s = 0.5 J each.
    assert rows[0]["energy_j"] == pytest.approx(7.5) and rows[0]["compute_energy_j"] == pytest.approx(1.5)
    assert rows[0]["energy_max_j"] == pytest.approx(3.5) and rows[0]["energy_mean_j"] == pytest.approx(2.5)
    # Device 2 reaches 4.5 J in round 2 (3.5, 7.0), device 1 in round 2 (2.5, 5.0), device 0 in round 3 (1.5, 3, 4.5).
    assert meter.died_round == [3, 2, 2]
    assert [row["alive_devices"] for row in rows] == [3, 1, 0, 0]
    assert rows[2]["energy_j"] == pytest.approx(1.5) and rows[3]["energy_j"] == 0.0  # only the living spend
    assert rows[3]["cumulative_energy_j"] == pytest.approx(4.5 + 5.0 + 7.0)
    assert rows[3]["radio_idle_s"] == pytest.approx(3 + 4 + 6) and rows[3]["compute_s"] == pytest.approx(7 * 0.25)
    assert meter.clock_s.tolist() == [3.0, 4.0, 6.0]  # a dead device's clock stops with its last step


def test_a_dead_device_neither_sends_nor_receives_and_keeps_its_model():
    trace = _trace_with_idle_seconds([1.0, 5.0, 1.0], rounds=3)
    meter = EnergyMeter(trace, 3, JOULE_A_SECOND, step_s=0.0, battery_j=4.0)
    meter.charge_step(0, local_steps=1)
    assert meter.alive.tolist() == [True, False, True]
    mask = meter.links(trace.round_links(1)).exchange(1400)
    assert mask.tolist() == [[False, False, True], [False, False, False], [True, False, False]]
    before, after = torch.zeros(3, 2), torch.ones(3, 2)
    assert meter.hold_dead(before, after).tolist() == [[1, 1], [0, 0], [1, 1]]


RUN = """name = "battery"
rounds = 6
devices = 8
[data]
dataset = "digits"
[algorithm]
name = "dpsgd"
lr = 0.1
[network]
link_model = "ideal"
density = 0.5
battery_j = {battery}
"""


def test_a_run_whose_batteries_empty_records_each_devices_round_of_death_and_continues(tmp_path):
    scenario = ScenarioConfig(devices=8, density=0.5)
    trace = control_trace("ideal", scenario, (2600,), 6, 0)  # the run's trace: digits logreg, 650 parameters
    power = Power.of(scenario)
    # Each round: the 0.05 s step with the radio listening, then the exchange over its window; the step at 3 W.
    per_round = np.array([power.radio_j(trace.radio_window_s(r, 0, trace.exchange_end_s(r, 0)))
                          + 0.05 * power.state_w[IDLE] + 0.05 * 3.0 for r in range(6)])  # (rounds, devices)
    spent = per_round.cumsum(axis=0)
    assert spent[2].max() > spent[2].min()  # devices with more neighbours receive more
    battery = (spent[2].min() + spent[2].max()) / 2  # the thriftiest last a round longer than the others
    expected = [int(np.argmax(spent[:, i] >= battery)) + 1 for i in range(8)]  # dead from the next round on
    assert set(expected) == {3, 4}
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(battery=battery))
    assert main(["run", str(path), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "c")]) == 0
    [run] = run_dirs(tmp_path / "results")
    record = json.loads((run / "run.json").read_text())
    metrics = pd.read_csv(run / "metrics.csv")
    assert record["status"] == "done" and record["rounds_completed"] == 6
    died = record["battery_died_round"]
    assert died == expected  # some empty a round before the others
    assert metrics["alive_devices"].tolist() == [8, 8, 8, 8 - died.count(3), 0, 0, 0]
    assert (metrics.loc[metrics["round"] > 4, "energy_j"] == 0).all()
    assert metrics["mean_accuracy"].iloc[4:].nunique() == 1  # nobody trains after the last battery empties
    assert record["energy_total_j"] == pytest.approx(metrics["energy_j"].sum())
    links = pd.read_csv(run / "links.csv")
    assert {"radio_tx_s", "radio_rx_s", "radio_idle_s", "radio_sleep_s"} <= set(links.columns)
    # delivered_links counts the masks the algorithm saw: a dead device's links are not among them.
    for r in range(1, 7):
        alive = np.array([d is None or d >= r for d in died])  # dead from the round after its battery emptied
        seen = trace.delivered(r - 1, 0) & alive[:, None] & alive[None, :]
        assert metrics.loc[r, "delivered_links"] == seen.sum(), r
    assert metrics.loc[5, "delivered_links"] == 0 < links.loc[4, "delivered_pairs"]  # the channel still carries them
