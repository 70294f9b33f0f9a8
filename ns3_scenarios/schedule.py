"""The local-barrier schedule over the message core: no global deadline, each device on its own clock.

Pure Python (no ns-3 import): it drives any ``Messages`` network, ns-3's
(``ns3_scenarios.network.Ns3Messages``, in the worker) or a control's
(``bridge.messages.DelayMessages``). A step of device j, for each exchange e of
the algorithm's step in order::

    compute  (exchange 0 only: step_s[j] simulated seconds; the radio listens, or,
              with radio_sleep, sleeps: j uses no more message of the step it
              finished, and a neighbour's message of the next step that
              completes meanwhile is lost to it)
    send     its message of (step, e) to its neighbours, U(0, send_jitter_s) after
             the compute ends (devices in lockstep, e.g. after a common time-out,
             would otherwise collide on every broadcast frame: 802.11's DCF sends
             at once on a channel idle for DIFS; the rounds schedule's start
             jitter plays this part there)
    wait     until it holds the (step, e) messages of ceil(quorum x n_j) of the n_j
             neighbours that address it, or timeout_s after its own send

and then the next exchange, or the next step's compute. Devices drift apart in
time; a message is *used* by its receiver only if it arrived before the
receiver passed that exchange's barrier (``used``): a late message is counted
in ``arrival_s`` but never mixed in a later step, because the synchronous
algorithms' updates (a doubly stochastic W, DSGT's tracker) are defined on
values of the same step. How long a step lasts is therefore the network's
answer, not a parameter.

The network is run only up to the next moment a device may pass by itself (a
send that finds its messages there already, a time-out) and stops at every
arrival before it (``Messages.advance``), so each barrier is passed at the
exact time of the arrival or time-out that satisfies it, and the next send is
scheduled from that time. Radio joules per (step, exchange, device) are the
device's energy between the ends of its consecutive barriers.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

RESOLUTION_S = 1e-9  # ns-3 keeps time in nanoseconds: a moment within this of the network's clock has come


class Messages(Protocol):
    """The message core as a schedule sees it: who addresses whom, send, run on, radio state."""

    nodes: int

    def now_s(self) -> float: ...

    def send(self, sender: int, at_s: float, nbytes: int, step: int, exchange: int) -> int:
        """Schedule ``sender``'s message of (step, exchange) from ``at_s`` on; returns its number (0, 1, ...)."""

    def advance(self, until_s: float) -> list[tuple[int, int, float]]:
        """Run until ``until_s`` or the first arrival before it, whichever comes first (``now_s`` says where it
        stopped); the (message number, receiver, arrival time) of the messages completed since the last call."""

    def sleep_between(self, device: int, from_s: float, until_s: float) -> None: ...

    def radio_joules(self) -> np.ndarray:
        """(nodes, 4) joules each radio has spent so far in tx, rx, idle and sleep."""


@dataclass(frozen=True)
class BarrierPlan:
    """What the schedule needs besides the network: the steps, each exchange's bytes, each device's compute
    per step, who addresses whom in each step's exchanges, and the barrier's rule."""

    steps: int
    payload_bytes: tuple[int, ...]  # per exchange of a step
    step_s: tuple[float, ...]  # per device: simulated seconds of one step's compute
    timeout_s: float
    quorum: float  # the fraction of its senders a device waits for (1: every one)
    radio_sleep: bool = False
    send_jitter_s: float = 0.005  # each message leaves U(0, this) after its compute ends
    seed: int = 0



def free_running(plan: BarrierPlan) -> bool:
    """A plan with quorum 0 and no time-out: nobody waits, each device computes, sends and goes on (the
    asynchronous schedule's message log, ``learner.asynchronous``): every arrival counts, whenever it comes."""
    return plan.quorum == 0 and plan.timeout_s == 0


def wanted(senders: int, quorum: float) -> int:
    """How many of its ``senders`` messages a device waits for: ceil(quorum x senders), at least 0."""
    return min(senders, math.ceil(quorum * senders - 1e-9))


def local_barrier(messages: Messages, plan: BarrierPlan, intended: Callable[[int, int], np.ndarray],
                  progress: Callable[[int], None] = lambda steps_done: None) -> dict[str, np.ndarray]:
    """Run the schedule; ``intended(step, exchange)`` is the (N, N) bool of who addresses whom there.

    Returns, with t measured in seconds since the schedule began:
    ``sent_s`` (K, E, N), ``arrival_s`` (K, E, N, N) [sender, receiver] (NaN: never), ``finished_s`` (K, E, N)
    (when each device passed the barrier), ``used`` (K, E, N, N) (arrived before the receiver's barrier),
    ``intended`` (K, E, N, N), ``radio_energy_j`` (K, E, N, 4) (its sleep state shows where radios slept)."""
    n, steps, exchanges = messages.nodes, plan.steps, len(plan.payload_bytes)
    shape = (steps, exchanges, n)
    sent_s, finished_s = np.full(shape, np.nan), np.full(shape, np.nan)
    arrival_s = np.full((*shape, n), np.nan)
    addressed = np.zeros((*shape, n), dtype=bool)
    radio_energy_j = np.zeros((*shape, 4))
    origin = messages.now_s()
    jitter = np.random.default_rng([plan.seed, 0x5E4D])
    phase_of: list[tuple[int, int, int]] = []  # message number -> (step, exchange, sender)
    phase = np.zeros(n, dtype=int)  # each device's current (step, exchange) as step * E + exchange
    waiting_since = np.full(n, np.inf)  # absolute time of its send while it waits, inf while it computes
    heard = np.zeros((steps * exchanges, n), dtype=int)  # messages of that phase device j holds from its senders
    joules_at_last_end = messages.radio_joules().copy()

    def addressing(step: int, exchange: int) -> np.ndarray:
        if not addressed[step, exchange].any():
            addressed[step, exchange] = intended(step, exchange)
        return addressed[step, exchange]

    def start_phase(device: int, at_s: float) -> None:
        """Device starts its current phase at ``at_s``: compute (exchange 0), then send and wait."""
        step, exchange = divmod(int(phase[device]), exchanges)
        compute = plan.step_s[device] if exchange == 0 else 0.0
        send_at = max(at_s + compute + jitter.uniform(0.0, plan.send_jitter_s), messages.now_s())
        number = messages.send(device, send_at, plan.payload_bytes[exchange], step, exchange)
        if number != len(phase_of):
            raise RuntimeError(f"message numbers out of order: got {number}, expected {len(phase_of)}")
        phase_of.append((step, exchange, device))
        sent_s[step, exchange, device] = send_at - origin
        waiting_since[device] = send_at

    def finish(device: int, at_s: float, joules: np.ndarray) -> None:
        """Pass the barrier of the device's current phase at ``at_s``; start its next phase."""
        p = int(phase[device])
        step, exchange = divmod(p, exchanges)
        finished_s[step, exchange, device] = at_s - origin
        radio_energy_j[step, exchange, device] = joules[device] - joules_at_last_end[device]
        joules_at_last_end[device] = joules[device]
        phase[device] += 1
        waiting_since[device] = np.inf
        if phase[device] < steps * exchanges:
            if plan.radio_sleep and phase[device] % exchanges == 0 and plan.step_s[device] > 0:
                messages.sleep_between(device, at_s, at_s + plan.step_s[device])
            start_phase(device, at_s)

    def ready(device: int, at_s: float) -> bool:
        """Whether the device, waiting since its send, may pass its barrier at ``at_s``."""
        p = int(phase[device])
        if p >= steps * exchanges or waiting_since[device] > at_s:
            return False
        step, exchange = divmod(p, exchanges)
        senders = int(addressing(step, exchange)[:, device].sum())
        return heard[p, device] >= wanted(senders, plan.quorum) or at_s >= waiting_since[device] + plan.timeout_s

    def check_times(device: int) -> list[float]:
        """When a waiting device may pass without a new arrival: at its send (the messages were there
        already) and at its time-out."""
        since = waiting_since[device]
        return [since, since + plan.timeout_s] if math.isfinite(since) else []

    for device in range(n):
        start_phase(device, origin)
    checks = [(at, device) for device in range(n) for at in check_times(device)]
    heapq.heapify(checks)
    last_reported = -1
    while (phase < steps * exchanges).any():
        # Run to the next moment a device may pass by itself, or to the first arrival before it.
        until = checks[0][0] if checks else math.inf
        arrivals = messages.advance(until)
        now = messages.now_s()
        joules = messages.radio_joules()
        events = [(at, 0, (int(number), int(receiver))) for number, receiver, at in arrivals]
        while checks and checks[0][0] <= now + RESOLUTION_S:
            at, device = heapq.heappop(checks)
            events.append((at, 1, device))
        heapq.heapify(events)
        while events:
            at_s, kind, what = heapq.heappop(events)
            if kind == 0:  # an arrival
                number, device = what
                step, exchange, sender = phase_of[number]
                arrival_s[step, exchange, sender, device] = at_s - origin
                if addressing(step, exchange)[sender, device]:
                    heard[step * exchanges + exchange, device] += 1
            else:
                device = what
            if ready(device, at_s):
                finish(device, at_s, joules)
                for at in check_times(device):
                    if at > now + RESOLUTION_S:
                        heapq.heappush(checks, (at, device))
                    else:  # a send now (no compute before it) that may find its messages there already
                        heapq.heappush(events, (at, 1, device))
        done = int(phase.min()) // exchanges
        if done != last_reported:
            progress(done)
            last_reported = done
    used = arrival_s <= finished_s[:, :, None, :]
    return {"sent_s": sent_s, "arrival_s": arrival_s, "finished_s": finished_s, "used": used,
            "intended": addressed, "radio_energy_j": radio_energy_j}
