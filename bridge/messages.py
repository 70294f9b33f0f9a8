"""The message core for the control link models, and a schedule's message log as a LinkTrace.

``DelayMessages`` answers a schedule (``messages.schedules``) as ns-3's
``Ns3Messages`` does, from a control's model instead of a simulation: a
message of (step, exchange) reaches the receivers whose link the control has
up in that step and exchange (its rounds trace's ``intended``), each when the
message's own frames have been sent (``airtime.message_s``: the sender
alone on the channel, from its send time: no contention, which the controls leave
out; the control's rounds use the same rule, ``bridge.controls``). A receiver whose radio sleeps when a
message completes misses it. Radio seconds (the ledger's input, ``messages.ledger``) follow the controls'
airtime estimate: a sender in TX for its PPDUs, a receiver in RX for each message it gets (with unicast, TX
for its ACKs), each counted when the message completes; asleep over the intervals the schedule asks for (from
when the device's own last message is out); idle the rest of the time, so per device they sum to the time
elapsed.

``barrier_link_trace`` turns a message-core schedule's log into the LinkTrace a
run replays: step k is "round" k, ``done_s`` is the arrival time after the
sender's send where the receiver used the message (NaN otherwise),
``finished_s`` when each device passed each barrier. The free-running schedule's log
(``schedule = "async"``) keeps every arrival, and ``finished_s`` is each device's send.
"""

from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np

from bridge.trace import LinkTrace
from messages.ledger import busy_within
from ns3_scenarios.airtime import message_radio_s, message_s
from ns3_scenarios.scenario import ScenarioConfig


class DelayMessages:
    """A control's links (``links.intended``, (K, E, N, N)) behind the message core."""

    def __init__(self, scenario: ScenarioConfig, links: LinkTrace):
        self.nodes = links.devices
        self._scenario, self._up = scenario, links.intended
        self._now = 0.0
        self._pending: list[tuple] = []  # (arrival, message number, receiver, sender, data s, ACK s)
        self._sent = 0
        self._busy_s = np.zeros((self.nodes, 2))  # seconds in tx, rx of the messages complete so far
        self._sending: list[tuple[float, int, float]] = []  # (completes at, sender, tx seconds), not yet counted
        self._sent_until = np.zeros(self.nodes)  # when each device's last message is out
        self._sleeps: list[list[tuple[float, float]]] = [[] for _ in range(self.nodes)]

    def now_s(self) -> float:
        return self._now

    def send(self, sender: int, at_s: float, nbytes: int, step: int, exchange: int,
             targets: Sequence[int] | None = None) -> int:
        """To every neighbour whose link is up, or (``targets``) a unicast copy to each chosen device, which
        arrives where the control has that link up."""
        scenario = self._scenario
        up = self._up[step, exchange, sender]
        if targets is not None:
            chosen = np.zeros(self.nodes, dtype=bool)
            chosen[list(targets)] = True
            up = up & chosen
        unicast = targets is not None or scenario.transport != "broadcast"
        copies = max(1, len(targets) if targets is not None else int(up.sum())) if unicast else 1
        acknowledged = unicast
        arrival = max(at_s, self._now) + message_s(nbytes, scenario.datagram_bytes, scenario.phy_mode,
                                                   scenario.datagram_interval_s, copies, acknowledged)
        data_s, ack_s = message_radio_s(nbytes, scenario.datagram_bytes, scenario.phy_mode)
        heapq.heappush(self._sending, (arrival, sender, copies * data_s))
        self._sent_until[sender] = max(self._sent_until[sender], arrival)
        number = self._sent
        self._sent += 1
        for receiver in np.flatnonzero(up):
            heapq.heappush(self._pending, (arrival, number, int(receiver), sender, data_s,
                                           ack_s if acknowledged else 0.0))
        return number

    def advance(self, until_s: float) -> list[tuple[int, int, float]]:
        """Up to ``until_s`` or the first instant something arrives (a message completing at a sleeping
        radio is lost)."""
        arrivals = self._arrivals(until_s)
        while self._sending and self._sending[0][0] <= self._now:
            _, sender, tx_s = heapq.heappop(self._sending)
            self._busy_s[sender, 0] += tx_s
        return arrivals

    def _arrivals(self, until_s: float) -> list[tuple[int, int, float]]:
        while self._pending and self._pending[0][0] <= until_s:
            first = self._pending[0][0]
            arrivals = []
            while self._pending and self._pending[0][0] == first:
                at, number, receiver, sender, data_s, ack_s = heapq.heappop(self._pending)
                if not self._asleep(receiver, at):
                    arrivals.append((number, receiver, at))
                    self._busy_s[receiver] += (ack_s, data_s)  # it hears the data and acknowledges each frame
                    self._busy_s[sender, 1] += ack_s
            if arrivals:
                self._now = max(self._now, first)
                return arrivals
        self._now = max(self._now, until_s)
        return []

    def sleep_between(self, device: int, from_s: float, until_s: float) -> None:
        """Asleep over [from_s, until_s), but not before its own last message is out."""
        start = max(from_s, self._now, self._sent_until[device])
        if until_s > start:
            self._sleeps[device].append((start, until_s))

    def _asleep(self, device: int, at_s: float) -> bool:
        return any(start <= at_s < end for start, end in self._sleeps[device])

    def retries(self) -> np.ndarray:
        return np.zeros(self.nodes)  # the controls' airtime model has no retransmissions

    def radio_seconds(self) -> np.ndarray:
        asleep = np.array([sum(max(0.0, min(end, self._now) - start) for start, end in sleeps)
                           for sleeps in self._sleeps])
        return busy_within(self._busy_s[:, 0], self._busy_s[:, 1], self._now - asleep, np.full(self.nodes, self._now))


def barrier_link_trace(log: dict[str, np.ndarray], payload_bytes: tuple[int, ...], timeout_s: float,
                       datagram_bytes: int, meta: dict) -> LinkTrace:
    """The LinkTrace of a message-core schedule's log (``messages.schedules.Schedule.run``'s arrays plus
    idle_delivered, positions and, from ns-3, idle_rate): the messages that count (``used``, the schedule's
    rule) are the trace's deliveries; ``retries`` per (step, exchange) sums each device's MAC retransmissions
    between its barriers, as ``radio_s`` its seconds. A pairwise log (``partner``, ``answered``, ``reply_s``) becomes two
    exchanges: 0 the requests, 1 the replies, recorded at the requester's index (``intended[k, 1, i, j]``: its
    partner j answered; ``done_s[k, 1, i, j]``: i held j's reply, seconds after i's request left; ``radio_s`` of exchange 1 is zero, the replies' radio time
    being in the seconds between each device's step ends, exchange 0's)."""
    if "reply_s" in log:
        log, payload_bytes = pairwise_as_exchanges(log), tuple(payload_bytes[:1]) * 2
    used = log["used"]
    steps, exchanges, n, _ = used.shape
    sizes = np.array(payload_bytes, dtype=np.int64)[None, :, None, None]
    done_s = np.where(used, log["arrival_s"] - log["sent_s"][..., None], np.nan).astype(np.float32)
    sender_bytes = np.broadcast_to(np.array(payload_bytes, dtype=np.int64)[None, :, None], (steps, exchanges, n))
    retries = log["retries"].sum(axis=-1) if "retries" in log else np.zeros((steps, exchanges))
    return LinkTrace(
        done_s=done_s, rx_bytes=np.where(used, sizes, 0).astype(np.int64), intended=log["intended"],
        radio_s=log["radio_s"], retries=np.rint(retries).astype(np.int64),
        positions=np.broadcast_to(np.asarray(log["positions"], dtype=np.float32), (steps, n, 2)).copy(),
        idle_delivered=np.asarray(log["idle_delivered"], dtype=bool), idle_rate=log.get("idle_rate"),
        payload_bytes=payload_bytes, deadline_s=timeout_s, datagram_bytes=datagram_bytes,
        sender_bytes=sender_bytes.copy(), finished_s=log["finished_s"], meta=meta)


def pairwise_as_exchanges(log: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A pairwise log's replies as a second exchange at the requester's index (``barrier_link_trace``)."""
    partner, steps, n = log["partner"], *log["partner"].shape
    step, device = np.nonzero(partner >= 0)
    replies = np.full((steps, n, n), np.nan)
    replies[step, device, partner[step, device]] = log["reply_s"][step, device]
    answered = np.zeros((steps, n, n), dtype=bool)  # the reply addressed the requester
    answered[step, device, partner[step, device]] = log["answered"][step, device]
    arrival_s = np.stack([log["arrival_s"][:, 0], replies], axis=1)
    return dict(log, arrival_s=arrival_s, used=~np.isnan(arrival_s),
                sent_s=np.repeat(log["sent_s"][:, :1], 2, axis=1), finished_s=np.repeat(log["finished_s"][:, :1], 2, axis=1),
                intended=np.stack([log["intended"][:, 0], answered], axis=1),
                radio_s=np.concatenate([log["radio_s"][:, :1], np.zeros_like(log["radio_s"][:, :1])], axis=1),
                **({"retries": np.concatenate([log["retries"][:, :1], np.zeros_like(log["retries"][:, :1])], axis=1)}
                   if "retries" in log else {}))


def partners(trace: LinkTrace) -> np.ndarray:
    """(K, N) the one device each message was addressed to (a trace of ``peers`` "one" or "pairwise"), -1: none."""
    asked = trace.intended[:, 0]
    return np.where(asked.any(axis=2), asked.argmax(axis=2), -1)


def pairwise_log(trace: LinkTrace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(partner, answered, reply_s since the schedule began), each (K, N), of a pairwise trace
    (``pairwise_as_exchanges``)."""
    partner = partners(trace)
    answered = trace.intended[:, 1].any(axis=2)
    step, device = np.nonzero(partner >= 0)
    reply_s = np.full(partner.shape, np.nan)
    reply_s[step, device] = (trace.finished_s[step, 0, device].astype(np.float64)
                             + trace.done_s[step, 1, device, partner[step, device]].astype(np.float64))
    return partner, answered, reply_s
