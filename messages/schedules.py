"""Schedules: when each device computes and sends, and when a message it received counts.

A schedule is a class with its own config rules (``rules``), its plan (``plan_for``) and, for the schedules
that run over the message core (``network.Messages``: ns-3's or a control's), ``run``. ``SCHEDULES`` is the
one registry: adding a schedule is a class and a line there.

- ``Rounds`` (``"rounds"``): a global deadline per exchange. Its fast path is ns-3's C++ ``RunSlot`` (each
  exchange of all devices simulated as one slot, ``ns3_scenarios/adhoc_network.h``) and the controls' round
  traces; it runs no barrier here.
- ``LocalBarrier`` (``"local_barrier"``), ``StaleSynchronous`` (``"stale_synchronous"``) and ``FreeRunning``
  (``"async"``) run the barrier engine below, which differs only in the rule that lets a waiting device pass
  (``may_pass``).

The barrier engine. A step of device j, for each exchange e of the algorithm's step in order::

    compute  (exchange 0 only: step_s[j] simulated seconds; the radio listens, or,
              with radio_sleep, sleeps: j uses no more message of the step it
              finished, and a neighbour's message of the next step that
              completes meanwhile is lost to it)
    send     its message of (step, e) to its neighbours, U(0, send_jitter_s) after
             the compute ends (devices in lockstep, e.g. after a common time-out,
             would otherwise collide on every broadcast frame: 802.11's DCF sends
             at once on a channel idle for DIFS; the rounds schedule's start
             jitter plays this part there)
    wait     until the schedule's rule lets it pass (``may_pass``), or timeout_s
             after its own send (``timeout_from = "send"``) or after its compute
             ended (``"compute_end"``: the send jitter then eats into the wait)

and then the next exchange, or the next step's compute. Devices drift apart in
time. **When a message counts** (``counts``, the one home of the rule): under a
barrier, a message is *used* by its receiver only if it arrived before the
receiver passed that exchange's barrier of the same step: a late message is
recorded in ``arrival_s`` but never mixed in a later step, because the
synchronous algorithms' updates (a doubly stochastic W, DSGT's tracker) are
defined on values of the same step. Free running, every arrival counts, at the
receiver's first step that ends at or after it (``merged_at``). How long a step
lasts is therefore the network's answer, not a parameter.

The network is run only up to the next moment a device may pass by itself (a
send that finds its messages there already, a time-out) and stops at every
arrival before it (``Messages.advance``), so each barrier is passed at the
exact time of the arrival or time-out that satisfies it, and the next send is
scheduled from that time. Radio seconds per (step, exchange, device) are the
device's seconds per state between the ends of its consecutive barriers (the ledger's
input, ``messages.ledger``).

**When a device sends** (``send_offsets``, one rule for every schedule and link model): U(0, send_jitter_s)
after its compute ends, the draw keyed by (seed, step, exchange, device), so two schedules over one seed send
each message at the same offset after its compute. (ns-3's rounds draw the same law from ns-3's own stream
inside ``RunSlot``; the controls' rounds use ``send_offsets``.)
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar

import numpy as np

from messages.draws import local_step_counts, partner_of
from messages.network import RESOLUTION_S, Messages


@dataclass(frozen=True)
class Plan:
    """What a message-core schedule needs besides the network: its name, the steps, each exchange's bytes,
    each device's compute per step, the barrier's rule, and how sends are spread."""

    schedule: str
    steps: int
    payload_bytes: tuple[int, ...]  # per exchange of a step
    step_s: tuple[float, ...]  # per device: simulated seconds of one step's compute
    timeout_s: float
    timeout_from: str = "send"  # the time-out counts from the device's send, or from its compute's end ("compute_end")
    quorum: float = 1.0  # local barrier: the fraction of its senders a device waits for (1: every one)
    max_staleness: int = 0  # stale synchronous: steps a device may run ahead of a neighbour it uses
    radio_sleep: bool = False
    send_jitter_s: float = 0.005  # each message leaves U(0, this) after its compute ends
    seed: int = 0
    peers: str = "neighbours"  # whom a message goes to (``PEERS``): every neighbour, or one drawn partner (async)
    local_steps_mean: float = 0.0  # > 0: a random count of local steps per message (step_s then per local step)
    loop_floor_s: float = 0.0  # with random counts: a loop lasts at least this (async_period_s)

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        """A plan as ``dataclasses.asdict`` wrote it (JSON: tuples became lists)."""
        return cls(**dict(data, payload_bytes=tuple(data["payload_bytes"]), step_s=tuple(data["step_s"])))


Rule = tuple[str, Any, bool, str]  # (config field, its value, whether it holds, what is expected)
TIMEOUT_FROM = ("send", "compute_end")  # what a barrier's time-out counts from
PEERS = ("neighbours", "pairwise", "one")  # to every neighbour; a request to one partner and its reply; to one
REPLY = -1  # the exchange number the engine gives a pairwise reply (sent by the partner, not by a phase)


class Schedule:
    """A schedule's class-level contract: ``name``, ``message_core`` (it runs over ``Messages``: a
    ``BarrierSchedule``), ``algorithm_kind``, ``rules(config)``, ``plan_for(config, step_s)``."""

    name: ClassVar[str]
    message_core: ClassVar[bool] = False
    algorithm_kind: ClassVar[str] = "synchronous"  # the algorithms it runs (learner/algorithms/registry.py)

    @classmethod
    def rules(cls, config: Any) -> list[Rule]:
        """The config rules this schedule owns (``config`` is a run config: ``network``, ``scenario``, ...)."""
        network, scenario = config.network, config.scenario
        defaults = {field.name: field.default for field in fields(network)}  # the config is their one home
        own = [name for schedule in SCHEDULES.values() if schedule is not cls
               for name in schedule.own_fields if name not in cls.own_fields]
        rules = [(f"network.{name}", getattr(network, name), getattr(network, name) == defaults[name],
                  f"{defaults[name]!r} unless schedule = {_owner(name)!r} (the field is its own)") for name in own]
        if cls.message_core:  # each device addresses its neighbours itself, over ad-hoc links
            rules += [("network.topology", scenario.topology,
                       scenario.topology == "adhoc" or network.link_model == "fixed_graph",
                       f"\"adhoc\" with schedule = {cls.name!r}"),
                      ("network.transport", scenario.transport, scenario.transport != "tcp" and scenario.fanout == 0,
                       f"broadcast or unicast to every neighbour (fanout 0) with schedule = {cls.name!r}")]
        return rules

    own_fields: ClassVar[tuple[str, ...]] = ()  # the network fields only this schedule reads

    @classmethod
    def plan_for(cls, config: Any, step_s: np.ndarray) -> Plan | None:
        return None

    @classmethod
    def _plan(cls, config: Any, steps: int, step_s: np.ndarray, **rule: Any) -> Plan:
        """The plan of ``steps`` steps, each device's ``step_s``, the run's payloads, send jitter and seed."""
        return Plan(schedule=cls.name, steps=steps, payload_bytes=tuple(config.payloads),
                    step_s=tuple(float(s) for s in step_s), send_jitter_s=config.scenario.start_jitter_s,
                    seed=config.seed, **rule)

def _owner(field_name: str) -> str:
    return next(name for name, schedule in SCHEDULES.items() if field_name in schedule.own_fields)


class BarrierSchedule(Schedule, ABC):
    """A schedule over the message core: an instance holds a ``Plan`` and ``run``s the barrier engine with its
    own passing rule (``may_pass``) and its rule for when a message counts (``counts``)."""

    message_core = True

    def __init__(self, plan: Plan):
        self.plan = plan

    def counts(self, arrival_s: np.ndarray, finished_s: np.ndarray) -> np.ndarray:
        """Which received messages the learner uses (K, E, N, N): those that arrived before the receiver
        passed the same step's barrier."""
        return arrival_s <= finished_s[:, :, None, :]

    @abstractmethod
    def may_pass(self, engine: "BarrierEngine", device: int, step: int, exchange: int, at_s: float) -> bool:
        """Whether ``device``, waiting at its barrier of (step, exchange), may go on at ``at_s`` before its
        time-out (the engine's arrays say what it holds)."""

    def run(self, messages: Messages, intended: Callable[[int, int], np.ndarray],
            progress: Callable[[int], None] = lambda steps_done: None) -> dict[str, np.ndarray]:
        """Run the schedule; ``intended(step, exchange)`` is the (N, N) bool of who addresses whom there.

        Returns, with t measured in seconds since the schedule began:
        ``sent_s`` (K, E, N), ``arrival_s`` (K, E, N, N) [sender, receiver] (NaN: never), ``finished_s``
        (K, E, N) (when each device passed the barrier), ``used`` (K, E, N, N) (``counts``), ``intended``
        (K, E, N, N), ``radio_s`` (K, E, N, 4) (its sleep state shows where radios slept)."""
        log = BarrierEngine(self, messages, intended).run(progress)
        log["used"] = self.counts(log["arrival_s"], log["finished_s"])
        return log


class Rounds(Schedule):
    """A global deadline per exchange: every device sends at the exchange's start (plus its start jitter) and
    a message counts if it arrived by the deadline. Runs on ns-3's C++ ``RunSlot`` and the controls' round
    traces (the fast path: one slot per exchange of all devices), not on the barrier engine."""

    name = "rounds"

    @classmethod
    def rules(cls, config: Any) -> list[Rule]:
        # The local barrier's quorum is tolerated under rounds (unused): the time and async campaigns sweep
        # schedule = ["rounds", "local_barrier"] with one barrier_quorum, until sweeps can pair fields.
        return [rule for rule in super().rules(config) if rule[0] != "network.barrier_quorum"]


def wanted(senders: int, quorum: float) -> int:
    """How many of its ``senders`` messages a device waits for: ceil(quorum x senders), at least 0."""
    return min(senders, math.ceil(quorum * senders - 1e-9))


class LocalBarrier(BarrierSchedule):
    """No global deadline: a device passes its barrier once it holds the (step, exchange) messages of
    ceil(quorum x n_j) of the n_j neighbours that address it, or ``timeout_s`` after its own send."""

    name = "local_barrier"
    own_fields = ("barrier_quorum",)

    @classmethod
    def plan_for(cls, config: Any, step_s: np.ndarray) -> Plan:
        """One gradient evaluation of each device's step time per step, the scenario's start jitter before
        each send, the barrier's time-out and this schedule's own waiting rule."""
        return cls._plan(config, config.rounds, step_s, timeout_s=config.network.barrier_timeout_s,
                         timeout_from=config.network.barrier_timeout_from,
                         radio_sleep=config.scenario.radio_sleep, **cls.waiting_rule(config.network))

    @staticmethod
    def waiting_rule(network: Any) -> dict[str, Any]:
        return {"quorum": network.barrier_quorum}

    def may_pass(self, engine, device, step, exchange, at_s):
        senders = int(engine.addressing(step, exchange)[:, device].sum())
        return engine.heard[step * engine.exchanges + exchange, device] >= wanted(senders, self.plan.quorum)


class StaleSynchronous(LocalBarrier):
    """Bounded staleness (Ho et al., NIPS 2013, "More Effective Distributed ML via a Stale Synchronous Parallel
    Parameter Server"), read for a decentralized network: a device may run at most ``max_staleness`` steps
    ahead of the slowest neighbour whose messages it uses, and learns a neighbour's progress only from its
    messages. Device j passes its barrier of (step k, exchange e) once, from every neighbour i that addresses
    it there, it holds a message of exchange e of some step in [k - max_staleness, k], or ``timeout_s`` after
    its own send (a message that never arrives).

    Reconstruction: the paper's parameter server sees every worker's clock; here a device knows a neighbour's
    step only from the messages it received, and a message from a later step than its own does not release
    it (it could not use a value from its future). ``max_staleness = 0`` is the local barrier with quorum 1,
    exactly. The synchronous algorithms mix values of the same step, so a message still counts only for its
    own step (``counts``): staleness loosens the waiting, not the mixing."""

    name = "stale_synchronous"
    own_fields = ("max_staleness",)

    @staticmethod
    def waiting_rule(network: Any) -> dict[str, Any]:
        return {"max_staleness": network.max_staleness}

    def may_pass(self, engine, device, step, exchange, at_s):
        senders = np.flatnonzero(engine.addressing(step, exchange)[:, device])
        window = engine.arrival_s[max(0, step - self.plan.max_staleness):step + 1, exchange, senders, device]
        return bool((~np.isnan(window)).any(axis=0).all())


class FreeRunning(BarrierSchedule):
    """Nobody waits (``schedule = "async"``): each device computes ``local_steps`` gradient steps (or for
    ``async_period_s``, if longer), sends, and goes on; every arrival counts, at the receiver's first step
    that ends at or after it (``merged_at``; ``learner.asynchronous``).

    **Pairwise exchanges** (``peers = "pairwise"``, an algorithm's own: AD-PSGD and SwarmSGD as published): a device's
    message is a request, a unicast (acknowledged, with the MAC's retries) to one neighbour drawn uniformly by
    (seed, device, step) (``messages.draws.partner_of``); the partner takes it the moment it arrives and
    answers at once with a unicast reply of the same size, unless it has taken its last step. Nobody waits
    for a reply. Each side applies its half when its message arrives (``learner.pairwise``): a lost request
    changes nobody; a lost reply leaves the exchange one-sided.

    **To one peer** (``peers = "one"``: gossip learning as published): each message is a unicast to one
    neighbour drawn as above, and nothing comes back."""

    name = "async"
    algorithm_kind = "asynchronous"
    own_fields = ("async_period_s",)

    @classmethod
    def rules(cls, config: Any) -> list[Rule]:
        network = config.network
        return super().rules(config) + [
            ("network.radio_sleep", config.scenario.radio_sleep, not config.scenario.radio_sleep,
             "false with schedule = \"async\" (a message may arrive at any time)"),
            ("network.battery_j", network.battery_j, network.battery_j == 0.0,
             "0 with schedule = \"async\" (batteries are charged per round; a free-running run has none)"),
            ("checkpoint_every", config.checkpoint_every or config.checkpoint_every_s, not config.checkpoints,
             "0 with schedule = \"async\" (an asynchronous run takes minutes and restarts from the start)")]

    @staticmethod
    def loop_s(config: Any, step_s: np.ndarray) -> np.ndarray:
        """(N,) each device's loop: its local steps' compute, or ``network.async_period_s`` if longer (a device
        sends at most once per period; it computes while it waits)."""
        return np.maximum(np.asarray(step_s, dtype=float) * config.algorithm.instance.local_steps,
                          config.network.async_period_s)

    @classmethod
    def period_s(cls, config: Any, step_s: np.ndarray) -> float:
        """The evaluation period: the median device's loop plus half the send jitter (its mean)."""
        return float(np.median(cls.loop_s(config, step_s))) + config.scenario.start_jitter_s / 2

    @classmethod
    def plan_for(cls, config: Any, step_s: np.ndarray) -> Plan:
        """Every device sends after each of its loops, nobody waits; as many steps as the fastest device takes
        in ``rounds`` periods (plus one). An algorithm that draws its local steps (``random_local_steps``:
        geometric with mean ``local_steps``, ``messages.draws.local_step_counts``) loops for its draw's compute,
        at least ``async_period_s``, so the fastest loop is one local step."""
        instance = config.algorithm.instance
        duration = config.rounds * cls.period_s(config, step_s)
        peers = getattr(instance, "peers", "neighbours")
        if getattr(instance, "random_local_steps", False):
            floor = config.network.async_period_s
            fastest = max(float(np.min(step_s)), floor, 1e-6)
            return cls._plan(config, int(math.ceil(duration / fastest)) + 1, step_s, timeout_s=0.0, quorum=0.0,
                             peers=peers, local_steps_mean=float(instance.local_steps), loop_floor_s=floor)
        loops = cls.loop_s(config, step_s)
        return cls._plan(config, int(math.ceil(duration / max(float(loops.min()), 1e-6))) + 1, loops, timeout_s=0.0,
                         quorum=0.0, peers=peers)

    def may_pass(self, engine, device, step, exchange, at_s):
        engine.addressing(step, exchange)  # records who addresses whom (the log's ``intended``)
        return True

    def counts(self, arrival_s: np.ndarray, finished_s: np.ndarray) -> np.ndarray:
        return ~np.isnan(arrival_s)

    @staticmethod
    def merged_at(step_end_s: np.ndarray, arrival_s: np.ndarray) -> np.ndarray:
        """The receiver's step (index into its ascending step ends) that merges each arrival: the first step
        ending at or after it (== len(step_end_s): after its last step, never merged)."""
        return np.searchsorted(step_end_s, arrival_s, side="left")


def send_offsets(seed: int, steps: int, exchanges: int, devices: int, jitter_s: float) -> np.ndarray:
    """(steps, exchanges, devices) how long after its compute ends each device sends each message: U(0,
    ``jitter_s``), one generator per step keyed by (seed, step), so the offset of (step, exchange, device)
    is the same whatever the schedule or how many steps are planned."""
    return np.stack([np.random.default_rng([seed, 0x5E4D, step]).uniform(0.0, jitter_s, (exchanges, devices))
                     for step in range(steps)]) if steps else np.zeros((0, exchanges, devices))


SCHEDULES: dict[str, type[Schedule]] = {
    "rounds": Rounds,
    "local_barrier": LocalBarrier,
    "stale_synchronous": StaleSynchronous,
    "async": FreeRunning,
}


def schedule_of(plan: Plan) -> BarrierSchedule:
    return SCHEDULES[plan.schedule](plan)


class BarrierEngine:
    """One run of a barrier schedule over a ``Messages`` network (the module docstring); the schedule's
    ``may_pass`` reads ``addressing``, ``heard`` (messages of each phase a device holds from the senders that
    address it) and ``arrival_s`` (every arrival so far)."""

    def __init__(self, schedule: BarrierSchedule, messages: Messages, intended: Callable[[int, int], np.ndarray]):
        plan = schedule.plan
        self.schedule, self.messages, self.plan, self._intended = schedule, messages, plan, intended
        n, steps, exchanges = messages.nodes, plan.steps, len(plan.payload_bytes)
        self.n, self.steps, self.exchanges = n, steps, exchanges
        shape = (steps, exchanges, n)
        self.sent_s, self.finished_s = np.full(shape, np.nan), np.full(shape, np.nan)
        self.arrival_s = np.full((*shape, n), np.nan)
        self.addressed = np.zeros((*shape, n), dtype=bool)
        self.radio_s = np.zeros((*shape, 4))
        self.retries = np.zeros(shape)  # MAC retransmissions per device between its barriers, as radio_s
        self._retries_now = getattr(messages, "retries", lambda: np.zeros(n))  # a test double may have none
        self.origin = messages.now_s()
        self.offsets = send_offsets(plan.seed, steps, exchanges, n, plan.send_jitter_s)
        self.local_steps = local_step_counts(plan.seed, steps, n, plan.local_steps_mean)
        self.phase_of: list[tuple[int, int, int]] = []  # message number -> (step, exchange or REPLY, sender)
        self.pairwise = plan.peers == "pairwise"
        self.one_peer = plan.peers in ("pairwise", "one")  # each message to one drawn neighbour
        self.partner = np.full((steps, n), -1)  # pairwise: whom each device's request of a step went to
        self.reply_s = np.full((steps, n), np.nan)  # pairwise: when its reply came back
        self.answered = np.zeros((steps, n), dtype=bool)  # pairwise: whether the partner took the request
        self.phase = np.zeros(n, dtype=int)  # each device's current (step, exchange) as step * E + exchange
        self.waiting_since = np.full(n, np.inf)  # absolute time of its send while it waits, inf while it computes
        self.timeout_at = np.full(n, np.inf)  # absolute time of its time-out while it waits
        self.heard = np.zeros((steps * exchanges, n), dtype=int)  # messages of that phase j holds from its senders
        self.seconds_at_last_end = messages.radio_seconds().copy()
        self.retries_at_last_end = np.asarray(self._retries_now(), dtype=float).copy()

    def addressing(self, step: int, exchange: int) -> np.ndarray:
        if not self.addressed[step, exchange].any():
            self.addressed[step, exchange] = self._intended(step, exchange)
        return self.addressed[step, exchange]

    def start_phase(self, device: int, at_s: float) -> None:
        """Device starts its current phase at ``at_s``: compute (exchange 0), then send and wait."""
        plan, messages = self.plan, self.messages
        step, exchange = divmod(int(self.phase[device]), self.exchanges)
        compute = plan.step_s[device] if exchange == 0 else 0.0
        if plan.local_steps_mean > 0 and exchange == 0:
            compute = max(compute * self.local_steps[step, device], plan.loop_floor_s)
        send_at = max(at_s + compute + self.offsets[step, exchange, device], messages.now_s())
        counted_from = at_s + compute if plan.timeout_from == "compute_end" else send_at
        self.timeout_at[device] = max(counted_from + plan.timeout_s, send_at)
        targets = None
        if self.one_peer:
            self.partner[step, device] = partner_of(plan.seed, device, step, self.addressing(step, exchange)[device])
            targets = [int(self.partner[step, device])] if self.partner[step, device] >= 0 else None
        if targets is not None or not self.one_peer:  # a device with no neighbour to draw sends nothing
            self._send(device, send_at, plan.payload_bytes[exchange], step, exchange, targets, (step, exchange, device))
        self.sent_s[step, exchange, device] = send_at - self.origin
        self.waiting_since[device] = send_at

    def _send(self, device: int, at_s: float, nbytes: int, step: int, exchange: int, targets, what: tuple) -> None:
        number = (self.messages.send(device, at_s, nbytes, step, exchange) if targets is None else
                  self.messages.send(device, at_s, nbytes, step, exchange, targets=targets))
        if number != len(self.phase_of):
            raise RuntimeError(f"message numbers out of order: got {number}, expected {len(self.phase_of)}")
        self.phase_of.append(what)

    def arrive(self, number: int, device: int, at_s: float) -> None:
        """Record message ``number``'s arrival at ``device``; a pairwise partner that still runs replies at once."""
        step, exchange, sender = self.phase_of[number]
        if exchange == REPLY:  # sender: the requester the reply goes back to
            self.reply_s[step, sender] = at_s - self.origin
            return
        self.arrival_s[step, exchange, sender, device] = at_s - self.origin
        if self.addressing(step, exchange)[sender, device]:
            self.heard[step * self.exchanges + exchange, device] += 1
        running = self.phase[device] < self.steps * self.exchanges
        if self.pairwise and self.partner[step, sender] == device and running:
            self.answered[step, sender] = True
            self._send(device, max(at_s, self.messages.now_s()), self.plan.payload_bytes[exchange], step, exchange,
                       [sender], (step, REPLY, sender))

    def finish(self, device: int, at_s: float, seconds: np.ndarray) -> None:
        """Pass the barrier of the device's current phase at ``at_s``; start its next phase."""
        p = int(self.phase[device])
        step, exchange = divmod(p, self.exchanges)
        self.finished_s[step, exchange, device] = at_s - self.origin
        self.radio_s[step, exchange, device] = seconds[device] - self.seconds_at_last_end[device]
        self.seconds_at_last_end[device] = seconds[device]
        retries = np.asarray(self._retries_now(), dtype=float)
        self.retries[step, exchange, device] = retries[device] - self.retries_at_last_end[device]
        self.retries_at_last_end[device] = retries[device]
        self.phase[device] += 1
        self.waiting_since[device] = self.timeout_at[device] = np.inf
        if self.phase[device] < self.steps * self.exchanges:
            if self.plan.radio_sleep and self.phase[device] % self.exchanges == 0 and self.plan.step_s[device] > 0:
                self.messages.sleep_between(device, at_s, at_s + self.plan.step_s[device])
            self.start_phase(device, at_s)

    def ready(self, device: int, at_s: float) -> bool:
        """Whether the device, waiting since its send, may pass its barrier at ``at_s``."""
        p = int(self.phase[device])
        if p >= self.steps * self.exchanges or self.waiting_since[device] > at_s:
            return False
        step, exchange = divmod(p, self.exchanges)
        return self.schedule.may_pass(self, device, step, exchange, at_s) or at_s >= self.timeout_at[device]

    def check_times(self, device: int) -> list[float]:
        """When a waiting device may pass without a new arrival: at its send (the messages were there
        already) and at its time-out."""
        since = self.waiting_since[device]
        return [since, self.timeout_at[device]] if math.isfinite(since) else []

    def run(self, progress: Callable[[int], None]) -> dict[str, np.ndarray]:
        messages, n, exchanges, total = self.messages, self.n, self.exchanges, self.steps * self.exchanges
        for device in range(n):
            self.start_phase(device, self.origin)
        checks = [(at, device) for device in range(n) for at in self.check_times(device)]
        heapq.heapify(checks)
        last_reported = -1
        while (self.phase < total).any():
            # Run to the next moment a device may pass by itself, or to the first arrival before it.
            until = checks[0][0] if checks else math.inf
            arrivals = messages.advance(until)
            now = messages.now_s()
            seconds = messages.radio_seconds()
            events = [(at, 0, (int(number), int(receiver))) for number, receiver, at in arrivals]
            while checks and checks[0][0] <= now + RESOLUTION_S:
                at, device = heapq.heappop(checks)
                events.append((at, 1, device))
            heapq.heapify(events)
            while events:
                at_s, kind, what = heapq.heappop(events)
                if kind == 0:  # an arrival
                    number, device = what
                    self.arrive(number, device, at_s)
                else:
                    device = what
                if self.ready(device, at_s):
                    self.finish(device, at_s, seconds)
                    for at in self.check_times(device):
                        if at > now + RESOLUTION_S:
                            heapq.heappush(checks, (at, device))
                        else:  # a send now (no compute before it) that may find its messages there already
                            heapq.heappush(events, (at, 1, device))
            done = int(self.phase.min()) // exchanges
            if done != last_reported:
                progress(done)
                last_reported = done
        log = {"sent_s": self.sent_s, "arrival_s": self.arrival_s, "finished_s": self.finished_s,
               "intended": self.addressed, "radio_s": self.radio_s, "retries": self.retries}
        if self.one_peer:  # a message addresses its partner only
            log.update(partner=self.partner, intended=np.zeros_like(self.addressed))
            if self.pairwise:
                log.update(answered=self.answered, reply_s=self.reply_s)
            step, device = np.nonzero(self.partner >= 0)
            log["intended"][step, 0, device, self.partner[step, device]] = True
        return log
