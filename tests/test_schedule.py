"""The local-barrier schedule (ns3_scenarios/schedule.py) against a plain per-event loop written from its
definition, properties over random schedules, the controls' message core, and the schedule on real ns-3."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.controls import control_trace
from bridge.messages import DelayMessages, barrier_link_trace
from ns3_scenarios.airtime import message_radio_s, message_s
from ns3_scenarios.scenario import ScenarioConfig
from ns3_scenarios.schedule import BarrierPlan, local_barrier, wanted


class TableMessages:
    """A message core whose message of (step, exchange) from i reaches j ``delay[step, exchange, i, j]`` after
    it is sent (NaN: never); no radio (zero joules)."""

    def __init__(self, delay: np.ndarray):
        self.nodes = delay.shape[-1]
        self._delay, self._now, self._pending, self._sent = delay, 0.0, [], 0

    def now_s(self):
        return self._now

    def send(self, sender, at_s, nbytes, step, exchange):
        assert at_s >= self._now - 1e-12, "a send in the past"
        for receiver, delay in enumerate(self._delay[step, exchange, sender]):
            if not math.isnan(delay):
                heapq.heappush(self._pending, (at_s + delay, self._sent, receiver))
        self._sent += 1
        return self._sent - 1

    def advance(self, until_s):
        out = []
        while self._pending and self._pending[0][0] <= until_s and (not out or self._pending[0][0] == out[0][2]):
            at, number, receiver = heapq.heappop(self._pending)
            out.append((number, receiver, at))
        self._now = max(self._now, out[0][2] if out else until_s)
        return out

    def sleep_between(self, device, from_s, until_s):
        pass

    def radio_joules(self):
        return np.zeros((self.nodes, 4))


def reference_barrier(delay: np.ndarray, intended: np.ndarray, step_s, timeout_s: float, quorum: float):
    """The schedule as one event queue, from its definition (no ticks): device j computes step_s[j] (first
    exchange of a step only), sends, and passes the barrier at the first moment it holds the messages of
    ceil(quorum x n_j) of the n_j devices addressing it in that (step, exchange), or timeout_s after its send."""
    steps, exchanges, n, _ = delay.shape
    finished = np.full((steps, exchanges, n), np.nan)
    sent = np.full((steps, exchanges, n), np.nan)
    arrival = np.full((steps, exchanges, n, n), np.nan)
    events = []  # (time, order, kind, data): kind 0 arrival, 1 send, 2 time-out

    def begin(device, phase, at):
        step, exchange = divmod(phase, exchanges)
        send_at = at + (step_s[device] if exchange == 0 else 0.0)
        heapq.heappush(events, (send_at, 1, 1, (device, phase)))

    for device in range(n):
        begin(device, 0, 0.0)
    current = [0] * n
    while events:
        at, _, kind, data = heapq.heappop(events)
        if kind == 0:
            step, exchange, sender, receiver = data
            arrival[step, exchange, sender, receiver] = at
            device = receiver
        elif kind == 1:
            device, phase = data
            step, exchange = divmod(phase, exchanges)
            sent[step, exchange, device] = at
            for receiver in range(n):
                if not math.isnan(delay[step, exchange, device, receiver]):
                    heapq.heappush(events, (at + delay[step, exchange, device, receiver], 0, 0,
                                            (step, exchange, device, receiver)))
            heapq.heappush(events, (at + timeout_s, 2, 2, (device, phase)))
        else:
            device, phase = data
        phase = current[device]
        if phase >= steps * exchanges:
            continue
        step, exchange = divmod(phase, exchanges)
        if math.isnan(sent[step, exchange, device]) or at < sent[step, exchange, device]:
            continue  # still computing
        senders = intended[step, exchange, :, device]
        held = int((~np.isnan(arrival[step, exchange, :, device]) & senders).sum())
        need = min(int(senders.sum()), math.ceil(quorum * senders.sum() - 1e-9))
        if held >= need or at >= sent[step, exchange, device] + timeout_s:
            finished[step, exchange, device] = at
            current[device] += 1
            if current[device] < steps * exchanges:
                begin(device, current[device], at)
    return sent, finished, arrival


def random_setting(seed: int, n: int, steps: int, exchanges: int, loss: float):
    rng = np.random.default_rng(seed)
    intended = rng.random((steps, exchanges, n, n)) < 0.7
    intended[:, :, np.arange(n), np.arange(n)] = False
    delay = np.where(intended & (rng.random(intended.shape) >= loss), rng.uniform(0.02, 0.9, intended.shape), np.nan)
    step_s = tuple(rng.uniform(0.02, 0.4, n))
    return delay, intended, step_s


@pytest.mark.parametrize("seed, quorum, loss, exchanges", [(0, 1.0, 0.0, 1), (1, 1.0, 0.3, 1), (2, 0.5, 0.3, 1),
                                                           (3, 0.75, 0.5, 2), (4, 0.0, 0.2, 1), (5, 0.34, 0.4, 3)])
def test_the_schedule_equals_a_plain_per_event_loop_over_the_same_message_log(seed, quorum, loss, exchanges):
    n, steps, timeout = 7, 6, 0.8
    delay, intended, step_s = random_setting(seed, n, steps, exchanges, loss)
    plan = BarrierPlan(steps=steps, payload_bytes=(100,) * exchanges, step_s=step_s, timeout_s=timeout,
                       quorum=quorum, send_jitter_s=0.0)
    log = local_barrier(TableMessages(delay), plan, lambda k, e: intended[k, e])
    sent, finished, arrival = reference_barrier(delay, intended, step_s, timeout, quorum)
    np.testing.assert_allclose(log["finished_s"], finished, atol=1e-6)
    np.testing.assert_allclose(log["sent_s"], sent, atol=1e-6)
    end = finished.max()  # the schedule stops when the last device passed its last barrier
    np.testing.assert_allclose(log["arrival_s"], np.where(arrival <= end, arrival, np.nan), atol=1e-6)
    np.testing.assert_array_equal(log["used"], arrival <= finished[:, :, None, :])
    assert np.isfinite(log["finished_s"]).all() and (np.diff(log["finished_s"].reshape(-1, 7), axis=0) >= 0).all()


def test_the_schedule_waits_for_the_quorum_and_no_longer():
    """Three devices, hand-made delays: 0 and 1 hear each other fast, 2 is heard late and hears nobody."""
    delay = np.full((1, 1, 3, 3), np.nan)
    delay[0, 0, 0, 1] = delay[0, 0, 1, 0] = 0.1
    delay[0, 0, 2, 0] = delay[0, 0, 2, 1] = 0.5
    intended = ~np.eye(3, dtype=bool)[None, None]
    step_s = (0.05, 0.05, 0.05)
    for quorum, expected in [(1.0, [0.55, 0.55, 0.05 + 1.0]), (0.5, [0.15, 0.15, 1.05])]:
        plan = BarrierPlan(steps=1, payload_bytes=(10,), step_s=step_s, timeout_s=1.0, quorum=quorum,
                           send_jitter_s=0.0)
        log = local_barrier(TableMessages(delay), plan, lambda k, e: intended[k, e])
        np.testing.assert_allclose(log["finished_s"][0, 0], expected, atol=1e-9)
    assert wanted(4, 0.5) == 2 and wanted(3, 0.5) == 2 and wanted(3, 1.0) == 3 and wanted(5, 0.0) == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 8), steps=st.integers(1, 6), exchanges=st.integers(1, 2),
       quorum=st.floats(0.0, 1.0), loss=st.floats(0.0, 0.9), timeout=st.floats(0.05, 2.0),
       jitter=st.floats(0.0, 0.3))
def test_a_device_never_uses_a_message_before_it_arrives(seed, n, steps, exchanges, quorum, loss, timeout, jitter):
    delay, intended, step_s = random_setting(seed, n, steps, exchanges, loss)
    plan = BarrierPlan(steps=steps, payload_bytes=(100,) * exchanges, step_s=step_s, timeout_s=timeout,
                       quorum=quorum, send_jitter_s=jitter, seed=seed)
    log = local_barrier(TableMessages(delay), plan, lambda k, e: intended[k, e])
    finished, sent, arrival, used = log["finished_s"], log["sent_s"], log["arrival_s"], log["used"]
    assert np.isfinite(finished).all() and np.isfinite(sent).all()
    # Used only if it arrived, and before the receiver passed that barrier; arrivals come after the send.
    assert not (used & np.isnan(arrival)).any()
    assert (arrival[used] <= np.broadcast_to(finished[:, :, None, :], used.shape)[used] + 1e-12).all()
    assert (np.nan_to_num(arrival, nan=np.inf) >= sent[..., None] - 1e-12).all()
    # A device sends after it passed its previous barrier plus its compute, and waits at most the time-out.
    previous = np.concatenate([np.zeros((1, n)), finished.reshape(-1, n)[:-1]]).reshape(steps, exchanges, n)
    compute = np.where(np.arange(exchanges)[None, :, None] == 0, np.asarray(step_s)[None, None, :], 0.0)
    assert (sent >= previous + compute - 1e-9).all()
    assert (finished >= sent - 1e-12).all() and (finished <= sent + timeout + 1e-9).all()
    # The trace a run replays masks exactly the used messages.
    trace_log = dict(log, idle_delivered=intended[0, 0], positions=np.zeros((n, 2)))
    trace = barrier_link_trace(trace_log, plan.payload_bytes, timeout, 1400, {})
    assert all(np.array_equal(trace.delivered(k, e), used[k, e]) for k in range(steps) for e in range(exchanges))
    assert trace.local_barrier and trace.step_end_s(steps - 1, np.ones(n, bool)) == finished[-1, -1].max()


def test_the_controls_message_core_times_a_message_by_its_own_airtime_and_a_sleeping_radio_misses_it():
    scenario = ScenarioConfig(devices=4, density=1.0)
    links = control_trace("ideal", scenario, (5000,), 2, 0)
    messages = DelayMessages(scenario, links)
    alone = message_s(5000, scenario.datagram_bytes, scenario.phy_mode, scenario.datagram_interval_s)
    messages.sleep_between(3, 0.0, 1.0)
    number = messages.send(0, 0.25, 5000, 0, 0)
    arrivals = messages.advance(2.0)
    assert sorted(r for _, r, _ in arrivals) == [1, 2] and all(m == number for m, _, _ in arrivals)
    assert all(t == pytest.approx(0.25 + alone) for _, _, t in arrivals)
    assert messages.now_s() == pytest.approx(0.25 + alone)  # it stops at the first arrival
    assert messages.advance(2.0) == [] and messages.now_s() == 2.0
    joules, volts = messages.radio_joules(), scenario.supply_voltage_v
    data_s, _ = message_radio_s(5000, scenario.datagram_bytes, scenario.phy_mode)
    np.testing.assert_allclose(joules[:, 3], [0, 0, 0, scenario.sleep_current_a * volts * 1.0])  # asleep 1 s of 2
    np.testing.assert_allclose(joules[:, 1], [0, *[scenario.rx_current_a * volts * data_s] * 2, 0])
    assert joules[0, 0] == pytest.approx(scenario.tx_current_a * volts * data_s) and not joules[1:, 0].any()
    np.testing.assert_allclose(joules[:, 2], scenario.idle_current_a * volts * np.array(
        [2.0 - data_s, 2.0 - data_s, 2.0 - data_s, 1.0]))


def test_the_local_barrier_over_a_control_is_deterministic_and_faster_with_a_smaller_quorum(tmp_path):
    from bridge.link_source import obtain_barrier_trace

    scenario = ScenarioConfig(devices=10, density=0.5)
    durations = {}
    for quorum in (1.0, 0.5):
        plan = BarrierPlan(steps=8, payload_bytes=(20_000,), step_s=(0.05,) * 10, timeout_s=1.5, quorum=quorum,
                           send_jitter_s=1.0, seed=3)
        trace, reused = obtain_barrier_trace("random_graph", scenario, plan, 3, tmp_path)
        again, reused_again = obtain_barrier_trace("random_graph", scenario, plan, 3, tmp_path)
        assert not reused and reused_again
        np.testing.assert_array_equal(trace.finished_s, again.finished_s)
        durations[quorum] = trace.step_end_s(7, np.ones(10, bool))
    assert durations[0.5] < durations[1.0]


def test_the_arrival_record_is_declared_once_and_decoded_by_name():
    from ns3_scenarios.scenario import ARRIVAL_FIELDS, decode_arrivals

    assert ARRIVAL_FIELDS == ("message", "receiver", "arrival_s")
    flat = np.array([3.0, 1.0, 0.25, 4.0, 0.0, 0.5])  # two arrivals, laid out as the C++ helper writes them
    assert decode_arrivals(flat) == [{"message": 3.0, "receiver": 1.0, "arrival_s": 0.25},
                                     {"message": 4.0, "receiver": 0.0, "arrival_s": 0.5}]
    assert decode_arrivals(np.zeros(0)) == []
