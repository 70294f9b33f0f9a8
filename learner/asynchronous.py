"""Asynchronous learning over a message log: every device on its own clock, no barrier, batched.

The schedule (``schedule = "async"``): device j loops on its own clock::

    local step(s)  H gradient steps on its own shard (H x its compute time)
    send           its message (the model, plus what the algorithm declares) to its neighbours
    merge          every message that arrived since its last merge, in arrival order

The network decides when each message arrives (``MessageLog``: ns-3's message
core, or a control's, ``ns3_scenarios.schedule``); the send times depend only on
the compute times, never on the learning, so the log is simulated first, offline.
A message is merged at the receiver's first step that ends at or after its
arrival; one that arrives after the receiver's last step is never merged.

**Batched and exact.** A step depends on the receiver's previous step and on the
steps that produced the messages it merges, nothing else. ``plan_levels`` gives
each step the level 1 + the highest level it depends on; the steps of one level
are causally independent and run as one batched step over all devices (the
others masked), in level order. The result equals running the steps one by one
in time order (``tests/test_asynchronous.py`` checks it against such a per-event
loop for every algorithm). Steps at the same simulated time are ordered by
device, and messages by (arrival time, sender, step): the same log gives the
same run.

**Staleness** of a merged message, recorded per merge: the sender's local steps
since it sent the message, at the moment the receiver merges it, and its age in
simulated seconds (merge time minus send time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

GradFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Inbox:
    """What the devices of one level merge: the r-th message each received since its last merge, in arrival
    order. ``messages`` (R, N, m) (zeros where absent), ``sender`` (R, N) (-1 where absent), ``present`` (R, N);
    ``step`` (N,): each device's step index at this level (-1: not active), for draws keyed by (device, step)."""

    messages: torch.Tensor
    sender: torch.Tensor
    present: torch.Tensor
    step: torch.Tensor


class AsyncAlgorithm(Protocol):
    """An asynchronous algorithm: a frozen dataclass of hyperparameters with pure methods.

    ``local(x, state, grad_fn, active)`` runs the local steps of the ``active`` devices (the others unchanged);
    ``message(x, state) -> (N, m)`` is what each device sends (its declared bytes: ``exchange_payloads``);
    ``merge(x, state, inbox, active) -> (x, state, used (R, N))`` merges the active devices' inboxes and says
    which messages it used."""

    name: str
    local_steps: int

    def exchange_payloads(self, dim: int) -> tuple[int, ...]: ...

    def init(self, x: torch.Tensor, seed: int = 0) -> object: ...

    def local(self, x: torch.Tensor, state, grad_fn: GradFn, active: torch.Tensor) -> tuple[torch.Tensor, object]: ...

    def message(self, x: torch.Tensor, state) -> torch.Tensor: ...

    def merge(self, x: torch.Tensor, state, inbox: Inbox,
              active: torch.Tensor) -> tuple[torch.Tensor, object, torch.Tensor]: ...


def sgd_steps(x: torch.Tensor, grad_fn: GradFn, lr: float, steps: int, active: torch.Tensor) -> torch.Tensor:
    """``steps`` plain SGD steps on the active devices' models; the others keep theirs."""
    for _ in range(steps):
        x = torch.where(active[:, None], x - lr * grad_fn(x), x)
    return x


def keyed_uniform(seed: int, device: np.ndarray, step: np.ndarray) -> np.ndarray:
    """U[0, 1) draws keyed by (seed, device, step) (splitmix64): a device's draw at a step does not depend on
    which other steps run beside it, so batched levels and a per-event loop draw the same numbers."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + device.astype(np.uint64) * np.uint64(0x100000001B3)
             + step.astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def average_with_one(x: torch.Tensor, inbox: Inbox, active: torch.Tensor, seed: int) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """Pairwise averaging, one-sided: each active device with messages averages its model with one of them,
    drawn uniformly (``keyed_uniform``) among those it received since its last merge: x_j <- (x_j + x_i) / 2.
    Returns (x, used (R, N))."""
    counts = inbox.present.sum(0)
    devices = np.arange(x.shape[0])
    draw = torch.from_numpy(keyed_uniform(seed, devices, inbox.step.clamp(min=0).numpy()))
    pick = torch.minimum((draw * counts).long(), (counts - 1).clamp(min=0))  # the pick-th present message
    rank = inbox.present.long().cumsum(0) - 1
    used = inbox.present & (rank == pick[None, :]) & active[None, :] & (counts > 0)[None, :]
    chosen = (inbox.messages[:, :, :x.shape[1]] * used[:, :, None]).sum(0)
    return torch.where(used.any(0)[:, None], (x + chosen) / 2, x), used


@dataclass(frozen=True)
class MessageLog:
    """When each device ends its steps and where its messages arrive, in seconds since the schedule began.

    ``step_s`` (K, N): device i ends its k-th step (and sends) at step_s[k, i]; NaN: no such step.
    ``arrival_s`` (K, N, N) [k, sender, receiver]: when sender's k-th message completed at receiver (NaN: never).
    """

    step_s: np.ndarray
    arrival_s: np.ndarray

    def within(self, horizon_s: float) -> "MessageLog":
        """The steps that end by ``horizon_s`` and the messages they sent."""
        step_s = np.where(self.step_s <= horizon_s, self.step_s, np.nan)
        arrival_s = np.where(~np.isnan(step_s)[:, :, None], self.arrival_s, np.nan)
        return MessageLog(step_s, arrival_s)


@dataclass(frozen=True)
class Merge:
    """One message merged: receiver's step (k, receiver), the message (sent_step, sender), and when."""

    level: int
    receiver: int
    step: int
    sender: int
    sent_step: int
    arrival_s: float


@dataclass(frozen=True)
class Level:
    """Causally independent steps: ``step`` (N,) each device's step index at this level (-1: none); ``inbox``
    per active device, its messages (sender, sent_step) in merge order."""

    step: np.ndarray
    inbox: dict[int, list[tuple[int, int]]]


def step_counts(log: MessageLog) -> np.ndarray:
    """(N,) how many steps each device takes (its steps are the first ones: a device stops, never skips)."""
    return (~np.isnan(log.step_s)).sum(axis=0)


def plan_levels(log: MessageLog) -> tuple[list[Level], list[Merge]]:
    """Each step's level and inbox (see the module docstring); the merges in (level, receiver) order."""
    steps_of = step_counts(log)
    k_max, n = log.step_s.shape
    inboxes: dict[tuple[int, int], list[tuple[float, int, int]]] = {}
    for sent_step, sender, receiver in zip(*np.nonzero(~np.isnan(log.arrival_s))):
        times = log.step_s[:steps_of[receiver], receiver]
        at = float(log.arrival_s[sent_step, sender, receiver])
        merged_at = int(np.searchsorted(times, at, side="left"))
        if merged_at < len(times) and receiver != sender:
            inboxes.setdefault((merged_at, int(receiver)), []).append((at, int(sender), int(sent_step)))
    level = np.zeros((k_max, n), dtype=np.int64)
    order = sorted((float(log.step_s[k, j]), j, k) for j in range(n) for k in range(steps_of[j]))
    for _, j, k in order:  # every message a step merges was sent strictly earlier: its level is known
        below = level[k - 1, j] if k else 0
        for _, sender, sent_step in inboxes.get((k, j), ()):
            below = max(below, level[sent_step, sender])
        level[k, j] = below + 1
    levels: list[Level] = []
    merges: list[Merge] = []
    for number in range(1, int(level.max(initial=0)) + 1):
        step = np.full(n, -1, dtype=np.int64)
        inbox = {}
        for j in range(n):
            hits = np.flatnonzero(level[:steps_of[j], j] == number)
            if len(hits):
                k = int(hits[0])
                step[j] = k
                ordered = sorted(inboxes.get((k, j), ()))
                inbox[j] = [(sender, sent_step) for _, sender, sent_step in ordered]
                merges += [Merge(number, j, k, sender, sent_step, at) for at, sender, sent_step in ordered]
        levels.append(Level(step, inbox))
    return levels, merges


@dataclass(frozen=True)
class AsyncResult:
    """``snapshots`` (E, N, d): each device's model after its last step at or before each evaluation time;
    ``used``: the merges the algorithm used; ``levels``: batched steps run."""

    snapshots: torch.Tensor
    used: list[Merge]
    levels: int
    state: object


def snapshot_windows(log: MessageLog, eval_s: np.ndarray) -> np.ndarray:
    """(K + 1, N, 2): for each device, the evaluation times [first, last) its model after step k - 1 stands
    for (row 0: the initial model, before its first step)."""
    k_max, n = log.step_s.shape
    ends = np.vstack([np.zeros((1, n)), np.where(np.isnan(log.step_s), np.inf, log.step_s), np.full((1, n), np.inf)])
    first = np.searchsorted(eval_s, ends[:-1], side="left")  # eval times at or after the step's end
    last = np.searchsorted(eval_s, ends[1:], side="left")
    return np.stack([first, last], axis=-1)


def run_async(algorithm: AsyncAlgorithm, x: torch.Tensor, state, grad_fn: GradFn, log: MessageLog,
              eval_s: np.ndarray, after_level: Callable[[Level, torch.Tensor], None] = lambda level, x: None
              ) -> AsyncResult:
    """Run the log's steps in batched levels; the models at the evaluation times ``eval_s`` (ascending)."""
    levels, merges = plan_levels(log)
    n = x.shape[0]
    windows = snapshot_windows(log, eval_s)
    snapshots = torch.empty((len(eval_s), *x.shape), dtype=x.dtype)
    for j in range(n):
        first, last = windows[0, j]
        snapshots[first:last, j] = x[j]
    sent: torch.Tensor | None = None
    used: list[Merge] = []
    merge_at = iter(merges)
    for number, level in enumerate(levels, start=1):
        active = torch.from_numpy(level.step >= 0)
        x, state = algorithm.local(x, state, grad_fn, active)
        message = algorithm.message(x, state)
        if sent is None:
            sent = torch.zeros((log.step_s.shape[0], n, message.shape[1]), dtype=message.dtype)
        devices = np.flatnonzero(level.step >= 0)
        sent[level.step[devices], devices] = message[devices]
        width = max((len(messages) for messages in level.inbox.values()), default=0)
        sender = torch.full((width, n), -1, dtype=torch.long)
        sent_step = torch.zeros((width, n), dtype=torch.long)
        for j, messages in level.inbox.items():
            for r, (i, k) in enumerate(messages):
                sender[r, j], sent_step[r, j] = i, k
        present = sender >= 0
        inbox_messages = torch.where(present[:, :, None], sent[sent_step, sender.clamp(min=0)], 0.0)
        x, state, taken = algorithm.merge(x, state, Inbox(inbox_messages, sender, present, torch.from_numpy(level.step)),
                                         active)
        for j in devices:
            for r in range(len(level.inbox.get(j, ()))):
                merge = next(merge_at)
                if bool(taken[r, j]):
                    used.append(merge)
            first, last = windows[level.step[j] + 1, j]
            snapshots[first:last, j] = x[j]
        after_level(level, x)
    return AsyncResult(snapshots, used, len(levels), state)


def staleness(used: list[Merge], log: MessageLog, local_steps: int) -> np.ndarray:
    """(M, 2) per used merge: the sender's local steps since it sent the message, when the receiver merged it,
    and the message's age in seconds (merge time minus send time)."""
    if not used:
        return np.zeros((0, 2))
    rows = []
    for merge in used:
        merged_s = log.step_s[merge.step, merge.receiver]
        sent_s = log.step_s[merge.sent_step, merge.sender]
        sender_steps = int((log.step_s[:, merge.sender] <= merged_s).sum())  # steps it ended by then
        rows.append(((sender_steps - (merge.sent_step + 1)) * local_steps, merged_s - sent_s))
    return np.asarray(rows, dtype=np.float64)
