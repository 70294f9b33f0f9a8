"""The barrier schedules (messages/schedules.py: the local barrier, stale synchronous) against a plain per-event
loop written from their definitions, properties over random schedules, the controls' message core, and the
schedules on real ns-3."""

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
from messages.schedules import Plan, schedule_of, send_offsets, wanted


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

    def radio_seconds(self):
        return np.zeros((self.nodes, 4))


def reference_barrier(delay: np.ndarray, intended: np.ndarray, step_s, timeout_s: float, quorum: float,
                      max_staleness: int | None = None):
    """The schedule as one event queue, from its definition (no ticks): device j computes step_s[j] (first
    exchange of a step only), sends, and passes the barrier at the first moment it holds the messages of
    ceil(quorum x n_j) of the n_j devices addressing it in that (step, exchange), or timeout_s after its send.
    With ``max_staleness`` s (stale synchronous): at the first moment it holds, from each of those devices, a
    message of that exchange from some step in [step - s, step]."""
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
        if max_staleness is None:
            held = int((~np.isnan(arrival[step, exchange, :, device]) & senders).sum())
            passes = held >= min(int(senders.sum()), math.ceil(quorum * senders.sum() - 1e-9))
        else:
            passes = all(any(not math.isnan(arrival[k, exchange, i, device])
                             for k in range(max(0, step - max_staleness), step + 1))
                         for i in range(n) if senders[i])
        if passes or at >= sent[step, exchange, device] + timeout_s:
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
    plan = Plan(schedule="local_barrier", steps=steps, payload_bytes=(100,) * exchanges, step_s=step_s, timeout_s=timeout,
                       quorum=quorum, send_jitter_s=0.0)
    log = schedule_of(plan).run(TableMessages(delay), lambda k, e: intended[k, e])
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
        plan = Plan(schedule="local_barrier", steps=1, payload_bytes=(10,), step_s=step_s, timeout_s=1.0, quorum=quorum,
                           send_jitter_s=0.0)
        log = schedule_of(plan).run(TableMessages(delay), lambda k, e: intended[k, e])
        np.testing.assert_allclose(log["finished_s"][0, 0], expected, atol=1e-9)
    assert wanted(4, 0.5) == 2 and wanted(3, 0.5) == 2 and wanted(3, 1.0) == 3 and wanted(5, 0.0) == 0


def test_a_time_out_counts_from_the_send_or_from_the_end_of_the_compute():
    """Device 2 hears nobody: it passes its time-out after its send, or after its compute ended (the send
    jitter, keyed by seed, step, exchange and device, then eats into the wait)."""
    delay = np.full((1, 1, 3, 3), np.nan)
    delay[0, 0, 0, 1] = delay[0, 0, 1, 0] = 0.1
    intended = ~np.eye(3, dtype=bool)[None, None]
    offsets = send_offsets(9, 1, 1, 3, 0.3)[0, 0]
    for timeout_from, expected in [("send", 0.05 + offsets[2] + 1.0), ("compute_end", 0.05 + 1.0)]:
        plan = Plan(schedule="local_barrier", steps=1, payload_bytes=(10,), step_s=(0.05,) * 3, timeout_s=1.0,
                    timeout_from=timeout_from, quorum=1.0, send_jitter_s=0.3, seed=9)
        log = schedule_of(plan).run(TableMessages(delay), lambda k, e: intended[k, e])
        np.testing.assert_allclose(log["sent_s"][0, 0], 0.05 + offsets, atol=1e-12)
        assert log["finished_s"][0, 0, 2] == pytest.approx(expected, abs=1e-9), timeout_from


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 8), steps=st.integers(1, 6), exchanges=st.integers(1, 2),
       quorum=st.floats(0.0, 1.0), loss=st.floats(0.0, 0.9), timeout=st.floats(0.05, 2.0),
       jitter=st.floats(0.0, 0.3))
def test_a_device_never_uses_a_message_before_it_arrives(seed, n, steps, exchanges, quorum, loss, timeout, jitter):
    delay, intended, step_s = random_setting(seed, n, steps, exchanges, loss)
    plan = Plan(schedule="local_barrier", steps=steps, payload_bytes=(100,) * exchanges, step_s=step_s, timeout_s=timeout,
                       quorum=quorum, send_jitter_s=jitter, seed=seed)
    log = schedule_of(plan).run(TableMessages(delay), lambda k, e: intended[k, e])
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
    seconds = messages.radio_seconds()
    data_s, _ = message_radio_s(5000, scenario.datagram_bytes, scenario.phy_mode)
    np.testing.assert_allclose(seconds[:, 3], [0, 0, 0, 1.0])  # asleep 1 s of 2
    np.testing.assert_allclose(seconds[:, 1], [0, data_s, data_s, 0])
    assert seconds[0, 0] == pytest.approx(data_s) and not seconds[1:, 0].any()
    np.testing.assert_allclose(seconds[:, 2], [2.0 - data_s, 2.0 - data_s, 2.0 - data_s, 1.0])
    np.testing.assert_allclose(seconds.sum(axis=1), 2.0, rtol=1e-12)  # one state at a time, all the time


def test_the_local_barrier_over_a_control_is_deterministic_and_faster_with_a_smaller_quorum(tmp_path):
    from bridge.link_source import obtain_barrier_trace

    scenario = ScenarioConfig(devices=10, density=0.5)
    durations = {}
    for quorum in (1.0, 0.5):
        plan = Plan(schedule="local_barrier", steps=8, payload_bytes=(20_000,), step_s=(0.05,) * 10, timeout_s=1.5, quorum=quorum,
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


# --- stale synchronous -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, max_staleness, loss, exchanges", [(0, 1, 0.0, 1), (1, 1, 0.3, 1), (2, 2, 0.5, 2),
                                                                  (3, 0, 0.4, 1), (4, 3, 0.6, 3)])
def test_stale_synchronous_equals_a_plain_per_event_loop(seed, max_staleness, loss, exchanges):
    n, steps, timeout = 7, 6, 0.8
    delay, intended, step_s = random_setting(seed, n, steps, exchanges, loss)
    plan = Plan(schedule="stale_synchronous", steps=steps, payload_bytes=(100,) * exchanges, step_s=step_s,
                timeout_s=timeout, max_staleness=max_staleness, send_jitter_s=0.0)
    log = schedule_of(plan).run(TableMessages(delay), lambda k, e: intended[k, e])
    sent, finished, arrival = reference_barrier(delay, intended, step_s, timeout, 1.0, max_staleness=max_staleness)
    np.testing.assert_allclose(log["finished_s"], finished, atol=1e-6)
    np.testing.assert_allclose(log["sent_s"], sent, atol=1e-6)
    np.testing.assert_array_equal(log["used"], log["arrival_s"] <= finished[:, :, None, :])  # its own step only


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 8), steps=st.integers(1, 7), exchanges=st.integers(1, 2),
       max_staleness=st.integers(0, 4), loss=st.floats(0.0, 0.9), timeout=st.floats(0.05, 2.0),
       jitter=st.floats(0.0, 0.3))
def test_stale_synchronous_uses_no_message_early_and_runs_at_most_s_steps_ahead_of_those_it_waits_for(
        seed, n, steps, exchanges, max_staleness, loss, timeout, jitter):
    delay, intended, step_s = random_setting(seed, n, steps, exchanges, loss)
    plan = Plan(schedule="stale_synchronous", steps=steps, payload_bytes=(100,) * exchanges, step_s=step_s,
                timeout_s=timeout, max_staleness=max_staleness, send_jitter_s=jitter, seed=seed)
    log = schedule_of(plan).run(TableMessages(delay), lambda k, e: intended[k, e])
    finished, sent, arrival, used = log["finished_s"], log["sent_s"], log["arrival_s"], log["used"]
    assert not (used & np.isnan(arrival)).any()  # used only if it arrived ...
    assert (arrival[used] <= np.broadcast_to(finished[:, :, None, :], used.shape)[used] + 1e-12).all()  # in time
    for k in range(steps):
        for e in range(exchanges):
            for j in range(n):
                if finished[k, e, j] >= sent[k, e, j] + timeout - 1e-9:
                    continue  # it passed by its time-out: a neighbour's messages never came
                for i in np.flatnonzero(intended[k, e, :, j]):
                    # Every neighbour it waited for had been heard at a step no more than s behind.
                    window = arrival[max(0, k - max_staleness):k + 1, e, i, j]
                    assert (window <= finished[k, e, j] + 1e-12).any(), (k, e, j, i)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 8), steps=st.integers(1, 6), exchanges=st.integers(1, 2),
       loss=st.floats(0.0, 0.9), timeout=st.floats(0.05, 2.0), jitter=st.floats(0.0, 0.3))
def test_stale_synchronous_with_no_staleness_is_the_local_barrier_with_quorum_one(seed, n, steps, exchanges, loss,
                                                                                  timeout, jitter):
    delay, intended, step_s = random_setting(seed, n, steps, exchanges, loss)
    common = dict(steps=steps, payload_bytes=(100,) * exchanges, step_s=step_s, timeout_s=timeout,
                  send_jitter_s=jitter, seed=seed)
    stale = schedule_of(Plan(schedule="stale_synchronous", max_staleness=0, **common)).run(
        TableMessages(delay), lambda k, e: intended[k, e])
    barrier = schedule_of(Plan(schedule="local_barrier", quorum=1.0, **common)).run(
        TableMessages(delay), lambda k, e: intended[k, e])
    for name in barrier:
        np.testing.assert_array_equal(stale[name], barrier[name], err_msg=name)


def test_a_larger_staleness_bound_never_makes_a_step_end_later_on_the_same_log():
    delay, intended, step_s = random_setting(11, 8, 8, 1, 0.3)
    ends = []
    for bound in (0, 1, 2, 4):
        plan = Plan(schedule="stale_synchronous", steps=8, payload_bytes=(100,), step_s=step_s, timeout_s=1.0,
                    max_staleness=bound, send_jitter_s=0.0)
        ends.append(schedule_of(plan).run(TableMessages(delay), lambda k, e: intended[k, e])["finished_s"].max())
    assert ends[0] > ends[-1] and all(a >= b - 1e-12 for a, b in zip(ends, ends[1:]))


def test_stale_synchronous_over_a_control_is_deterministic_and_says_its_schedule(tmp_path):
    from bridge.link_source import obtain_barrier_trace

    scenario = ScenarioConfig(devices=10, density=0.5)
    plan = Plan(schedule="stale_synchronous", steps=8, payload_bytes=(20_000,), step_s=(0.05,) * 8 + (0.4,) * 2,
                timeout_s=1.5, max_staleness=1, send_jitter_s=1.0, seed=3)
    trace, reused = obtain_barrier_trace("random_graph", scenario, plan, 3, tmp_path)
    again, reused_again = obtain_barrier_trace("random_graph", scenario, plan, 3, tmp_path)
    assert not reused and reused_again and trace.meta["schedule"] == "stale_synchronous"
    np.testing.assert_array_equal(trace.finished_s, again.finished_s)
    assert trace.local_barrier and np.isfinite(trace.finished_s).all()


@pytest.mark.parametrize("schedule, field, value, words", [
    ("local_barrier", "max_staleness", "2", "network.max_staleness: 2 is not allowed; expected 0 unless schedule = "
                                            "'stale_synchronous'"),
    ("stale_synchronous", "barrier_quorum", "0.5", "network.barrier_quorum: 0.5 is not allowed; expected 1.0 unless "
                                                   "schedule = 'local_barrier'"),
    ("rounds", "async_period_s", "1.0", "network.async_period_s: 1.0 is not allowed; expected 0.0 unless schedule = "
                                        "'async'"),
])
def test_a_field_only_another_schedule_reads_is_refused_naming_that_schedule(tmp_path, capsys, schedule, field, value,
                                                                            words):
    from experiments.cli import main

    config = tmp_path / "run.toml"
    config.write_text(f'rounds = 2\ndevices = 4\n[data]\ndataset = "digits"\n[network]\nlink_model = "ideal"\n'
                      f'schedule = "{schedule}"\n{field} = {value}\n')
    assert main(["run", str(config), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not (tmp_path / "results").exists()


@pytest.mark.ns3
def test_a_stale_synchronous_run_over_ns3_finishes_on_the_networks_clock(tmp_path):
    """Stale synchronous over real ns-3 with stragglers, end to end from a config: done, its trace says its
    schedule, every step ended, and the rows' clock is when the last device passed each step's barrier."""
    import json

    import pandas as pd

    from experiments.cli import main
    from helpers import run_dirs

    config = tmp_path / "stale.toml"
    config.write_text('name = "stale"\nseed = 1\nrounds = 4\ndevices = 8\n[data]\ndataset = "digits"\n[network]\n'
                      'link_model = "ns3"\ndensity = 0.6\nschedule = "stale_synchronous"\nmax_staleness = 2\n'
                      'compute_model = "stragglers"\nstraggler_fraction = 0.25\n')
    assert main(["run", str(config), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--quiet"]) == 0
    (run_dir,) = run_dirs(tmp_path / "r")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "done" and record["trace_meta"]["schedule"] == "stale_synchronous"
    with np.load(tmp_path / "c" / record["trace_key"] / "trace.npz", allow_pickle=False) as arrays:
        finished = arrays["finished_s"]
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert np.isfinite(finished).all() and (metrics["delivered_links"].iloc[1:] > 0).all()
    np.testing.assert_allclose(metrics["sim_time_s"].iloc[1:], finished[:, -1].max(axis=1), rtol=1e-7)


def test_a_message_to_chosen_targets_reaches_only_them_as_acknowledged_unicast_copies():
    """The controls' message core: targets restrict the receivers to the chosen devices whose link is up, each
    gets its own unicast copy (the sender pays one per target), and a broadcast config does not change that."""
    scenario = ScenarioConfig(devices=5, density=1.0)
    links = control_trace("ideal", scenario, (5000,), 1, 0)
    one, two = DelayMessages(scenario, links), DelayMessages(scenario, links)
    one.send(0, 0.0, 5000, 0, 0, targets=[3])
    two.send(0, 0.0, 5000, 0, 0, targets=[2, 3])
    assert sorted(r for _, r, _ in one.advance(5.0)) == [3]
    assert sorted(r for _, r, _ in two.advance(5.0)) == [2, 3]
    data_s, _ = message_radio_s(5000, scenario.datagram_bytes, scenario.phy_mode)
    assert two.radio_seconds()[0, 0] == pytest.approx(2 * one.radio_seconds()[0, 0])  # a copy per target
    assert one.radio_seconds()[0, 0] == pytest.approx(data_s)
    assert one.radio_seconds()[1, 1] == 0 and one.radio_seconds()[3, 1] > 0  # only the target receives


@pytest.mark.ns3
def test_ns3_sends_a_message_to_chosen_targets_only():
    """Over real 802.11a: a message to one chosen neighbour arrives there and nowhere else; the same sender's
    message to every neighbour (the scenario's broadcast) reaches the others too, offline and online alike."""
    from bridge.online import OnlineMessages

    scenario = ScenarioConfig(devices=5, density=1.0)
    messages = OnlineMessages(scenario, 1, timeout_s=300)
    try:
        neighbours = np.flatnonzero(messages.idle_delivered[0])
        assert len(neighbours) >= 2
        chosen = int(neighbours[0])
        to_one = messages.send(0, messages.now_s() + 0.01, 3000, 0, 0, targets=[chosen])
        arrivals = []
        while messages.now_s() < 2.0:
            arrivals += messages.advance(2.0)
        assert [(m, r) for m, r, _ in arrivals] == [(to_one, chosen)]
        to_all = messages.send(0, messages.now_s() + 0.01, 3000, 0, 0)
        arrivals = []
        while messages.now_s() < 4.0:
            arrivals += messages.advance(4.0)
        assert sorted(r for m, r, _ in arrivals if m == to_all) == sorted(int(j) for j in neighbours)
    finally:
        messages.close()
