"""Pairwise exchanges over the message log, event by event, batched (``peers = "pairwise"``: AD-PSGD and SwarmSGD
as published).

The message core (``messages.schedules.FreeRunning``) sends each device's k-th message as a request, unicast
to one drawn neighbour, who replies at once; the log (``messages.log.MessageLog``) says where each request
went, whether the partner took it, and when request and reply arrived. A device's events, in time order::

    step end k   the request leaves carrying y = x (its model now); then its local steps' update, computed
                 from the read copy (its model when the step began, right after its previous step end), is
                 applied: x <- x + (local(read) - read); read <- x
    request in   from i (the partner takes it, and is still running): its reply carries c = x, then
                 x <- x + (y_i - x) / 2
    reply in     to its own request k: x <- x + (c - y) / 2, y what that request carried

Each exchange's two halves sum to zero, so the devices' mean moves only by the local steps (and by an
exchange whose reply was lost or came after the run's end: one-sided, the partner moved, the requester did
not). A half changes the model at the moment its message arrives (the paper's atomic averaging, on each side
when it hears the other), so a device may serve several requests while it computes; nobody waits.

**Batched and exact**, as ``learner.asynchronous``: an event depends on the device's previous event and, for a
request, on the requester's step end that sent it, for a reply on the partner's event that sent it, all
strictly earlier; each event gets the level 1 + the highest level it depends on, and one level runs every
device's event of that level at once (ties in time: arrivals before a step end, as a message arriving at a
step's end is merged by that step). ``tests/test_pairwise.py`` holds it to a per-event loop (1e-6).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np
import torch

from learner.asynchronous import (AsyncAlgorithm, AsyncResult, EventReference, GradFn, Inbox, Level, Merges,
                                 PairwiseAveraging)
from messages.log import MessageLog

STEP, REQUEST, REPLY = 2, 0, 1  # event kinds, in their order at equal times


def pairwise_events(log: MessageLog, until_s: float) -> dict[str, np.ndarray]:
    """Every event up to ``until_s``, one row each: time, device, kind, step (the step ending, or the request's
    step), peer (the requester of a request taken, the partner of a reply), sorted by (time, kind, device)."""
    step, device = np.nonzero(~np.isnan(log.step_end_s))
    taken_k, requester = np.nonzero(log.answered)
    partner = log.partner[taken_k, requester]
    request_s = log.arrival_s[taken_k, requester, partner]
    reply_s = log.reply_s[taken_k, requester]
    back = ~np.isnan(reply_s)
    events = dict(time_s=np.r_[log.step_end_s[step, device], request_s, reply_s[back]],
                  device=np.r_[device, partner, requester[back]],
                  kind=np.r_[np.full(len(step), STEP), np.full(len(partner), REQUEST), np.full(int(back.sum()), REPLY)],
                  step=np.r_[step, taken_k, taken_k[back]], peer=np.r_[np.full(len(step), -1), requester, partner[back]])
    keep = events["time_s"] <= until_s
    events = {name: values[keep] for name, values in events.items()}
    order = np.lexsort((events["device"], events["kind"], events["time_s"]))
    return {name: values[order] for name, values in events.items()}


def plan_events(log: MessageLog, until_s: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The events (``pairwise_events``) and each one's level; a reply whose request half fell after ``until_s``
    (or was never taken) is dropped with it."""
    events = pairwise_events(log, until_s)
    n = log.step_end_s.shape[1]
    level = np.zeros(len(events["time_s"]), dtype=np.int64)
    last = np.zeros(n, dtype=np.int64)  # each device's latest event level
    step_event, request_event = {}, {}  # (k, device) -> event index of its step end; (k, requester) -> its serve
    keep = np.ones(len(level), dtype=bool)
    for e, (device, kind, k, peer) in enumerate(zip(events["device"], events["kind"], events["step"], events["peer"])):
        needed = last[device]
        if kind == REQUEST:
            needed = max(needed, level[step_event[(k, peer)]])
            request_event[(k, peer)] = e
        elif kind == REPLY:
            if (k, device) not in request_event:
                keep[e] = False
                continue
            needed = max(needed, level[request_event[(k, device)]])
        else:
            step_event[(k, device)] = e
        level[e] = last[device] = needed + 1
    return {name: values[keep] for name, values in events.items()}, level[keep]


def run_pairwise(algorithm: AsyncAlgorithm, x: torch.Tensor, state, grad_fn: GradFn, log: MessageLog,
                 eval_s: np.ndarray, after_level: Callable[[Level, torch.Tensor], None] = lambda level, x: None,
                 before_level: Callable[[Level], None] = lambda level: None,
                 local_steps: np.ndarray | None = None) -> AsyncResult:
    """Run the pairwise log's events in batched levels; the models at the evaluation times ``eval_s`` (ascending).

    The pool: row k * N + i is what device i's k-th request carried, row (K + k) * N + i what its reply
    carried. ``Level.step`` is each device's step index where its event is a step end (-1 otherwise), so the
    callbacks see which devices take gradient steps. ``local_steps`` (K, N): an algorithm with
    ``random_local_steps`` runs that many ``local_step``s before its k-th request (the message core's draw,
    ``messages.draws.local_step_counts``), ``before_level`` told before each, with the devices still stepping."""
    events, levels = plan_events(log, float(eval_s[-1]))
    k_max, n = log.step_end_s.shape
    time_s, device, kind, step, peer = (events[name] for name in ("time_s", "device", "kind", "step", "peer"))
    snapshots, windows = x[None].repeat(len(eval_s), 1, 1), event_windows(time_s, device, eval_s)
    read = x.clone()
    pool: torch.Tensor | None = None
    applied = np.zeros(len(time_s), dtype=bool)
    batches = by_level(levels)
    for here in batches:
        stepping = here[kind[here] == STEP]
        marks = np.full(n, -1)
        marks[device[stepping]] = step[stepping]
        level = Level(marks, np.full((0, n), -1), np.full((0, n), -1))
        active = torch.from_numpy(level.step >= 0)
        message = algorithm.message(x, state)
        if pool is None:
            pool = torch.zeros((2 * k_max * n, message.shape[1]), dtype=message.dtype)
        pool[step[stepping] * n + device[stepping]] = message[device[stepping]]  # the requests leave
        if getattr(algorithm, "random_local_steps", False):
            counts = np.zeros(n, dtype=np.int64)
            counts[device[stepping]] = local_steps[step[stepping], device[stepping]]
            moved = read
            for done in range(int(counts.max(initial=0))):
                still = Level(np.where(counts > done, level.step, -1), level.sender, level.sent_step)
                before_level(still)
                moved, state = algorithm.local_step(moved, state, grad_fn, torch.from_numpy(still.step >= 0))
        else:
            before_level(level)
            moved, state = algorithm.local(read, state, grad_fn, active)
        rows = torch.from_numpy(device[stepping])
        x = x.index_put((rows,), x[rows] + (moved[rows] - read[rows]))
        read = read.index_put((rows,), x[rows])
        halves = here[kind[here] != STEP]
        taking = halves[kind[halves] == REQUEST]
        pool[(k_max + step[taking]) * n + peer[taking]] = message[device[taking]]  # the replies leave
        present = torch.zeros((1, n), dtype=torch.bool)
        row, own_row = torch.full((1, n), -1), torch.full((1, n), -1)
        present[0, device[halves]] = True
        row[0, device[halves]] = torch.from_numpy(np.where(kind[halves] == REQUEST, step[halves] * n + peer[halves],
                                                           (k_max + step[halves]) * n + device[halves]))
        own_row[0, device[halves]] = torch.from_numpy(np.where(kind[halves] == REQUEST, -1,
                                                               step[halves] * n + device[halves]))
        sender = torch.full((1, n), -1)
        sender[0, device[halves]] = torch.from_numpy(peer[halves])
        inbox = Inbox(sender, present, row, pool, torch.from_numpy(level.step), own_row)
        x, state, used = algorithm.merge(x, state, inbox, present[0])
        applied[halves] = used[0, device[halves]].numpy()
        for e in here[windows[here, 1] > windows[here, 0]]:
            snapshots[windows[e, 0]:windows[e, 1], device[e]] = x[device[e]]
        after_level(level, x)
    return AsyncResult(snapshots, merges_of(events, levels, applied, log), len(batches), state)


def by_level(levels: np.ndarray) -> list[np.ndarray]:
    """The events' indices level by level (1, 2, ...), each level's in event order."""
    order = np.argsort(levels, kind="stable")
    bounds = np.searchsorted(levels[order], np.arange(1, int(levels.max(initial=0)) + 2))
    return [order[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def event_windows(time_s: np.ndarray, device: np.ndarray, eval_s: np.ndarray) -> np.ndarray:
    """(events, 2): the evaluation times [first, last) each event's model stands for, until the device's next
    event."""
    following = np.full(len(time_s), np.inf)
    order = np.lexsort((np.arange(len(time_s)), device))  # each device's events in time order
    same = device[order][1:] == device[order][:-1]
    following[order[:-1][same]] = time_s[order[1:][same]]
    return np.stack([np.searchsorted(eval_s, time_s, side="left"), np.searchsorted(eval_s, following, side="left")],
                    axis=-1)


def merges_of(events: dict[str, np.ndarray], levels: np.ndarray, applied: np.ndarray, log: MessageLog) -> Merges:
    """The halves applied, as merges: receiver, its step in progress, the message's sender and step (a reply:
    the partner's step in progress when it replied), when it was sent, arrived and was merged."""
    half = (events["kind"] != STEP) & applied
    time_s, device, kind, k, peer = (events[name][half] for name in ("time_s", "device", "kind", "step", "peer"))
    request_s = np.where(kind == REQUEST, np.nan, log.arrival_s[k, np.where(kind == REPLY, device, peer),
                                                                np.where(kind == REPLY, peer, device)])
    sent_s = np.where(kind == REQUEST, log.step_end_s[k, np.maximum(peer, 0)], request_s)
    ends = np.where(np.isnan(log.step_end_s), np.inf, log.step_end_s)
    in_progress = (ends[:, device] < time_s[None, :]).sum(axis=0)
    sender_step = np.where(kind == REQUEST, k, (ends[:, peer] < sent_s[None, :]).sum(axis=0))
    return Merges(levels[half], device, in_progress, peer, sender_step, time_s, sent_s, time_s)


def exchange_halves(x: torch.Tensor, inbox: Inbox, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each half received: x <- x + (carried - own) / 2, own the pool row ``inbox.own_row`` (a reply: what the
    device's request carried) or, where that is -1, the model itself (a request taken). Returns (x, used)."""
    dim = x.shape[1]
    used = inbox.present & active[None, :]
    entry, receivers = torch.nonzero(used, as_tuple=True)
    if len(receivers) == 0:
        return x, used
    rows, own_rows = inbox.row[entry, receivers], inbox.own_row[entry, receivers]
    stored = own_rows >= 0
    half = torch.full((len(receivers),), 0.5, dtype=torch.float64)
    # Only the receivers' rows: a level of the engine holds a few halves among many devices.
    changed, position = torch.unique(receivers, return_inverse=True)
    moved = inbox.combine(torch.cat([rows, own_rows[stored]]), torch.cat([position, position[stored]]),
                          torch.cat([half, -half[stored]]), len(changed), dim)
    itself = torch.zeros(len(changed), dtype=x.dtype).index_add_(0, position[~stored], half[~stored].to(x.dtype))
    return x.index_put((changed,), x[changed] + moved - itself[:, None] * x[changed]), used


class PairwiseExchangeByEvent(EventReference):
    """The halves per event (``tests/test_pairwise.py``): each received (carried, own) moves the model by
    (carried - own) / 2, own None meaning the model itself (a request taken)."""

    def merge(self, x_j, memory, inbox, draw):
        for _, (carried, own) in inbox:
            x_j = x_j + (carried - (x_j if own is None else own)) / 2
        return x_j, memory, list(range(len(inbox)))


class PairwiseExchange(PairwiseAveraging):
    """The loop AD-PSGD as published runs on the message core (``peers = "pairwise"``, ``run_pairwise``):
    ``local_steps`` SGD steps from the read copy, a request carrying the model to one drawn neighbour, its
    reply, each side's half (``exchange_halves``); the local steps and the message are the broadcast form's
    (``PairwiseAveraging``). Subclasses are frozen dataclasses with ``lr`` and ``local_steps``."""

    peers: ClassVar[str] = "pairwise"

    def merge(self, x: torch.Tensor, state: int, inbox: Inbox,
              active: torch.Tensor) -> tuple[torch.Tensor, int, torch.Tensor]:
        x, used = exchange_halves(x, inbox, active)
        return x, state, used

    def reference(self) -> EventReference:
        return PairwiseExchangeByEvent(self)


SEND, RECEIVE = 1, 0  # a one-peer log's event kinds, in their order at equal times


def push_events(log: MessageLog, until_s: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A one-peer log's events up to ``until_s`` (``peers = "one"``), sorted by (time, kind, device), and each
    one's level: a device's sends at its step ends, and the receipt of each message that arrived at its peer,
    which depends on the send."""
    step, device = np.nonzero(~np.isnan(log.step_end_s))
    sent_k, sender = np.nonzero(log.partner >= 0)
    receiver = log.partner[sent_k, sender]
    arrival = log.arrival_s[sent_k, sender, receiver]
    came = ~np.isnan(arrival)
    events = dict(time_s=np.r_[log.step_end_s[step, device], arrival[came]], device=np.r_[device, receiver[came]],
                  kind=np.r_[np.full(len(step), SEND), np.full(int(came.sum()), RECEIVE)],
                  step=np.r_[step, sent_k[came]], peer=np.r_[np.full(len(step), -1), sender[came]])
    keep = events["time_s"] <= until_s
    order = np.lexsort((events["device"][keep], events["kind"][keep], events["time_s"][keep]))
    events = {name: values[keep][order] for name, values in events.items()}
    level = np.zeros(len(order), dtype=np.int64)
    last = np.zeros(log.step_end_s.shape[1], dtype=np.int64)
    sent_at = {}  # (k, device) -> the level of its send
    for e, (d, kind, k, peer) in enumerate(zip(events["device"], events["kind"], events["step"], events["peer"])):
        needed = last[d] if kind == SEND else max(last[d], sent_at[(k, peer)])
        level[e] = last[d] = needed + 1
        if kind == SEND:
            sent_at[(k, d)] = level[e]
    return events, level


def run_push(algorithm: AsyncAlgorithm, x: torch.Tensor, state, grad_fn: GradFn, log: MessageLog,
             eval_s: np.ndarray, after_level: Callable[[Level, torch.Tensor], None] = lambda level, x: None,
             before_level: Callable[[Level], None] = lambda level: None) -> AsyncResult:
    """Gossip learning's loop as published over a one-peer log (``peers = "one"``), events in batched levels: at
    each step end a device sends its message (``algorithm.message``: the model, its age) to its drawn peer; a
    device that receives one merges it (``algorithm.merge``, an inbox of that one message) and then runs its
    local steps (``algorithm.local``: the update on receipt). ``Level.step`` marks the receiving devices (the
    ones that take gradient steps), ``Level.time_s`` when. The models at the evaluation times ``eval_s``."""
    events, levels = push_events(log, float(eval_s[-1]))
    k_max, n = log.step_end_s.shape
    time_s, device, kind, step, peer = (events[name] for name in ("time_s", "device", "kind", "step", "peer"))
    snapshots, windows = x[None].repeat(len(eval_s), 1, 1), event_windows(time_s, device, eval_s)
    pool: torch.Tensor | None = None
    applied = np.zeros(len(time_s), dtype=bool)
    batches = by_level(levels)
    for here in batches:
        sending, receiving = here[kind[here] == SEND], here[kind[here] == RECEIVE]
        message = algorithm.message(x, state)
        if pool is None:
            pool = torch.zeros((k_max * n, message.shape[1]), dtype=message.dtype)
        pool[step[sending] * n + device[sending]] = message[device[sending]]
        marks = np.full(n, -1)
        marks[device[receiving]] = step[receiving]  # the received message's step: >= 0 marks a receiver
        times = np.full(n, np.nan)
        times[device[receiving]] = time_s[receiving]
        level = Level(marks, np.full((1, n), -1), np.full((1, n), -1), times)
        present = torch.from_numpy(marks >= 0)[None, :]
        sender = torch.full((1, n), -1)
        sender[0, device[receiving]] = torch.from_numpy(peer[receiving])
        row = torch.full((1, n), -1)
        row[0, device[receiving]] = torch.from_numpy(step[receiving] * n + peer[receiving])
        active = present[0]
        inbox = Inbox(sender, present, row, pool, torch.from_numpy(marks))
        x, state, used = algorithm.merge(x, state, inbox, active)
        applied[receiving] = used[0, device[receiving]].numpy()
        if len(receiving):
            before_level(level)
            x, state = algorithm.local(x, state, grad_fn, active)
        for e in here[windows[here, 1] > windows[here, 0]]:
            snapshots[windows[e, 0]:windows[e, 1], device[e]] = x[device[e]]
        after_level(level, x)
    half = (kind == RECEIVE) & applied
    ends = np.where(np.isnan(log.step_end_s), np.inf, log.step_end_s)
    receivers, senders, sent_k, merged_s = device[half], peer[half], step[half], time_s[half]
    merges = Merges(levels[half], receivers, (ends[:, receivers] < merged_s[None, :]).sum(axis=0), senders, sent_k,
                    merged_s, log.step_end_s[sent_k, senders], merged_s)
    return AsyncResult(snapshots, merges, len(batches), state)
