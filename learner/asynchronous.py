"""Asynchronous learning over a message log: every device on its own clock, no barrier, batched.

The schedule (``schedule = "async"``): device j loops on its own clock::

    local step(s)  H gradient steps on its own shard (H x its compute time)
    send           its message (the model, plus what the algorithm declares) to its neighbours
    merge          every message that arrived since its last merge, in arrival order

The network decides when each message arrives (``messages.log.MessageLog``: ns-3's message
core, or a control's, under ``messages.schedules.FreeRunning``); the send times depend only on
the compute times, never on the learning, so the log is simulated first, offline.
A message is merged at the receiver's first step that ends at or after its
arrival (``FreeRunning.merged_at``, the schedule's rule); one that arrives after
the receiver's last step is never merged.

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

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Callable, Protocol

import numpy as np
import torch

from learner.algorithms.base import Message, check_integer, check_range, model_message
from messages.draws import keyed_uniform
from messages.log import MessageLog
from messages.schedules import FreeRunning

GradFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Inbox:
    """What the devices of one level merge: the r-th message each received since its last merge, in arrival
    order. ``sender`` (R, N) (-1 where absent), ``present`` (R, N), ``row`` (R, N): the message's row in
    ``pool``, every message sent so far ((K x N, m): row k * N + i is device i's k-th message; models in the
    first ``dim`` columns, the algorithm's scalars after them); ``step`` (N,): each device's step index at
    this level (-1: not active), for draws keyed by (device, step). A pairwise exchange's half
    (``learner.pairwise``) also has ``own_row`` (R, N): the pool row of what the receiver's own request carried,
    -1 where the half pairs the message with the receiver's model itself."""

    sender: torch.Tensor
    present: torch.Tensor
    row: torch.Tensor
    pool: torch.Tensor
    step: torch.Tensor
    own_row: torch.Tensor | None = None

    def scalars(self, column: int) -> torch.Tensor:
        """(R, N): column ``column`` of each message (0 where absent)."""
        return torch.where(self.present, self.pool[self.row.clamp(min=0), column], 0.0)

    def combine(self, rows: torch.Tensor, receivers: torch.Tensor, weights: torch.Tensor, n: int,
                dim: int) -> torch.Tensor:
        """(N, dim): sum over entries of weights * pool[rows, :dim] into receivers, as one dense product over the
        distinct rows (a message many devices merge is read once)."""
        if rows.numel() == 0:
            return torch.zeros(n, dim, dtype=self.pool.dtype)
        distinct, position = torch.unique(rows, return_inverse=True)
        mixing = torch.zeros(n, len(distinct), dtype=self.pool.dtype)
        mixing.index_put_((receivers, position), weights.to(self.pool.dtype), accumulate=True)
        return mixing @ self.pool[distinct, :dim]


class AsyncAlgorithm(Protocol):
    """An asynchronous algorithm: a frozen dataclass of hyperparameters with pure methods.

    ``local(x, state, grad_fn, active)`` runs the local steps of the ``active`` devices (the others unchanged);
    ``message(x, state) -> (N, m)`` is what each device sends: the columns of its one declared message
    (``messages(dim)``, m = its fields' widths, the model first);
    ``merge(x, state, inbox, active) -> (x, state, used (R, N))`` merges the active devices' inboxes and says
    which messages it used."""

    name: str
    local_steps: int

    def messages(self, dim: int) -> tuple[Message]: ...

    def init(self, x: torch.Tensor, seed: int = 0) -> object: ...

    def local(self, x: torch.Tensor, state, grad_fn: GradFn, active: torch.Tensor) -> tuple[torch.Tensor, object]: ...

    def message(self, x: torch.Tensor, state) -> torch.Tensor: ...

    def merge(self, x: torch.Tensor, state, inbox: Inbox,
              active: torch.Tensor) -> tuple[torch.Tensor, object, torch.Tensor]: ...


def sgd_steps(x: torch.Tensor, grad_fn: GradFn, lr: float, steps: int, active: torch.Tensor) -> torch.Tensor:
    """``steps`` plain SGD steps on the active devices' models; the others keep theirs (only the active rows
    are touched: a level of the asynchronous engines often steps a few devices of many)."""
    rows = torch.nonzero(active).squeeze(1)
    if len(rows) == 0:
        return x
    for _ in range(steps):
        x = x.index_put((rows,), x[rows] - lr * grad_fn(x)[rows])
    return x


def average_with_one(x: torch.Tensor, inbox: Inbox, active: torch.Tensor, seed: int) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """Pairwise averaging, one-sided: each active device with messages averages its model with one of them,
    drawn uniformly (``keyed_uniform``) among those it received since its last merge: x_j <- (x_j + x_i) / 2.
    Returns (x, used (R, N))."""
    n, dim = x.shape
    counts = inbox.present.sum(0)
    draw = torch.from_numpy(keyed_uniform(seed, np.arange(n), inbox.step.clamp(min=0).numpy()))
    pick = torch.minimum((draw * counts).long(), (counts - 1).clamp(min=0))  # the pick-th present message
    rank = inbox.present.long().cumsum(0) - 1
    used = inbox.present & (rank == pick[None, :]) & active[None, :]
    picked, receivers = torch.nonzero(used, as_tuple=True)
    partner = inbox.combine(inbox.row[picked, receivers], receivers, torch.ones(len(receivers)), n, dim)
    return torch.where(used.any(0)[:, None], (x + partner) / 2, x), used


class EventReference(ABC):
    """One device's loop written plainly from the paper, one event at a time: the per-event reference an
    asynchronous algorithm carries next to it (``algorithm.reference()``), which ``tests/test_asynchronous.py``
    replays in time order and holds the batched engine to (1e-6). ``memory`` is the device's own state (a
    dict); ``inbox`` the messages received since its last merge, ``(sender, payload)`` in arrival order;
    ``draw`` the device's ``keyed_uniform`` at this step. ``merge`` returns the positions in ``inbox`` it used."""

    def __init__(self, algorithm):
        self.algorithm = algorithm

    def start(self, x_j: torch.Tensor) -> dict:
        return {}

    def local(self, x_j: torch.Tensor, memory: dict, device_grad: Callable[[torch.Tensor], torch.Tensor]
              ) -> tuple[torch.Tensor, dict]:
        for _ in range(self.algorithm.local_steps):
            x_j = x_j - self.algorithm.lr * device_grad(x_j)
        return x_j, memory

    def send(self, x_j: torch.Tensor, memory: dict) -> tuple:
        return (x_j.clone(),)

    @abstractmethod
    def merge(self, x_j: torch.Tensor, memory: dict, inbox: list[tuple[int, tuple]],
              draw: float) -> tuple[torch.Tensor, dict, list[int]]:
        """The device's merge of ``inbox``: (x_j, memory, the positions in ``inbox`` it used)."""


class PairwiseByEvent(EventReference):
    """Average with the message at position floor(draw x count) of those received: x_j <- (x_j + x_i) / 2."""

    def merge(self, x_j, memory, inbox, draw):
        if not inbox:
            return x_j, memory, []
        pick = min(int(draw * len(inbox)), len(inbox) - 1)
        return (x_j + inbox[pick][1][0]) / 2, memory, [pick]


class PairwiseAveraging:
    """The loop AD-PSGD and SwarmSGD share on the message core: ``local_steps`` SGD steps, send the dense model
    (d x 4 bytes), average with one message received since the last merge (``average_with_one``). The state is
    the seed the partner draws are keyed by. Subclasses are frozen dataclasses with ``lr`` and ``local_steps``."""

    lr: float
    local_steps: int

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("local_steps", self.local_steps, 1, 1000)

    def messages(self, dim: int) -> tuple[Message]:
        return model_message(dim)

    def init(self, x: torch.Tensor, seed: int = 0) -> int:
        return seed

    def local(self, x: torch.Tensor, state: int, grad_fn: GradFn, active: torch.Tensor) -> tuple[torch.Tensor, int]:
        return sgd_steps(x, grad_fn, self.lr, self.local_steps, active), state

    def message(self, x: torch.Tensor, state: int) -> torch.Tensor:
        return x

    def merge(self, x: torch.Tensor, state: int, inbox: Inbox,
              active: torch.Tensor) -> tuple[torch.Tensor, int, torch.Tensor]:
        x, used = average_with_one(x, inbox, active, state)
        return x, state, used

    def reference(self) -> EventReference:
        return PairwiseByEvent(self)


@dataclass(frozen=True)
class Merges:
    """Messages merged, one entry each (arrays): the receiver's step (``step``, ``receiver``), the message
    (``sent_step``, ``sender``), when it arrived, and the level that merged it; when it was sent and merged."""

    level: np.ndarray
    receiver: np.ndarray
    step: np.ndarray
    sender: np.ndarray
    sent_step: np.ndarray
    arrival_s: np.ndarray
    sent_s: np.ndarray
    merged_s: np.ndarray

    def __len__(self) -> int:
        return len(self.receiver)

    def select(self, keep: np.ndarray) -> "Merges":
        return Merges(*(getattr(self, f.name)[keep] for f in fields(self)))

    def rows(self) -> list[tuple[int, int, int, int]]:
        """(receiver, step, sender, sent_step) per merge, sorted."""
        return sorted(zip(*(getattr(self, name).tolist() for name in ("receiver", "step", "sender", "sent_step"))))


@dataclass(frozen=True)
class Level:
    """Causally independent steps: ``step`` (N,) each device's step index at this level (-1: none); ``sender``
    and ``sent_step`` (R, N): each active device's messages in merge order (-1 where none); ``time_s`` (N,),
    where an engine's events are not step ends (``learner.pairwise.run_push``): when each active device's
    local steps happen."""

    step: np.ndarray
    sender: np.ndarray
    sent_step: np.ndarray
    time_s: np.ndarray | None = None


def step_counts(log: MessageLog) -> np.ndarray:
    """(N,) how many steps each device takes (its steps are the first ones: a device stops, never skips)."""
    return (~np.isnan(log.step_end_s)).sum(axis=0)


def plan_levels(log: MessageLog) -> tuple[list[Level], Merges]:
    """Each step's level and inbox (see the module docstring); the merges in (level, receiver, rank) order."""
    steps_of = step_counts(log)
    k_max, n = log.step_end_s.shape
    sent_step, sender, receiver = np.nonzero(~np.isnan(log.arrival_s))
    keep = sender != receiver
    sent_step, sender, receiver = sent_step[keep], sender[keep], receiver[keep]
    arrival = log.arrival_s[sent_step, sender, receiver]
    merged_at = np.empty(len(arrival), dtype=np.int64)  # the receiver's first step ending at or after it
    for j in range(n):
        here = receiver == j
        merged_at[here] = FreeRunning.merged_at(log.step_end_s[:steps_of[j], j], arrival[here])
    keep = merged_at < steps_of[receiver]  # arrived after the receiver's last step: never merged
    order = np.lexsort((sent_step[keep], sender[keep], arrival[keep], merged_at[keep], receiver[keep]))
    sent_step, sender, receiver, arrival, merged_at = (a[keep][order] for a in
                                                       (sent_step, sender, receiver, arrival, merged_at))
    starts = np.flatnonzero(np.r_[True, (receiver[1:] != receiver[:-1]) | (merged_at[1:] != merged_at[:-1])]
                            if len(receiver) else np.zeros(0, dtype=bool))
    ends = np.r_[starts[1:], len(receiver)]
    inbox = {(int(merged_at[a]), int(receiver[a])): (a, b) for a, b in zip(starts, ends)}
    level = np.zeros((k_max, n), dtype=np.int64)
    times = [(float(log.step_end_s[k, j]), j, k) for j in range(n) for k in range(steps_of[j])]
    for _, j, k in sorted(times):  # every message a step merges was sent strictly earlier: its level is known
        below = level[k - 1, j] if k else 0
        if (k, j) in inbox:
            a, b = inbox[(k, j)]
            below = max(below, int(level[sent_step[a:b], sender[a:b]].max()))
        level[k, j] = below + 1
    levels: list[Level] = []
    merged: list[np.ndarray] = []  # per level, the indices into the sorted arrays, (receiver, rank) order
    valid = np.arange(k_max)[:, None] < steps_of[None, :]
    for number in range(1, int(level.max(initial=0)) + 1):
        at_level = (level == number) & valid
        step = np.where(at_level.any(0), at_level.argmax(0), -1)
        spans = {j: inbox.get((int(step[j]), j), (0, 0)) for j in np.flatnonzero(step >= 0)}
        width = max((b - a for a, b in spans.values()), default=0)
        senders, sent_steps = np.full((width, n), -1, dtype=np.int64), np.full((width, n), -1, dtype=np.int64)
        for j, (a, b) in spans.items():
            senders[:b - a, j], sent_steps[:b - a, j] = sender[a:b], sent_step[a:b]
            merged.append(np.arange(a, b))
        levels.append(Level(step, senders, sent_steps))
    index = np.concatenate(merged) if merged else np.zeros(0, dtype=np.int64)
    return levels, Merges(level[merged_at[index], receiver[index]], receiver[index], merged_at[index],
                          sender[index], sent_step[index], arrival[index], log.step_end_s[sent_step, sender][index],
                          log.step_end_s[merged_at, receiver][index])


@dataclass(frozen=True)
class AsyncResult:
    """``snapshots`` (E, N, d): each device's model after its last step at or before each evaluation time;
    ``used``: the merges the algorithm used; ``levels``: batched steps run."""

    snapshots: torch.Tensor
    used: Merges
    levels: int
    state: object


def snapshot_windows(log: MessageLog, eval_s: np.ndarray) -> np.ndarray:
    """(K + 1, N, 2): for each device, the evaluation times [first, last) its model after step k - 1 stands
    for (row 0: the initial model, before its first step)."""
    k_max, n = log.step_end_s.shape
    ends = np.vstack([np.zeros((1, n)), np.where(np.isnan(log.step_end_s), np.inf, log.step_end_s), np.full((1, n), np.inf)])
    first = np.searchsorted(eval_s, ends[:-1], side="left")  # eval times at or after the step's end
    last = np.searchsorted(eval_s, ends[1:], side="left")
    return np.stack([first, last], axis=-1)


def run_async(algorithm: AsyncAlgorithm, x: torch.Tensor, state, grad_fn: GradFn, log: MessageLog,
              eval_s: np.ndarray, after_level: Callable[[Level, torch.Tensor], None] = lambda level, x: None,
              before_level: Callable[[Level], None] = lambda level: None) -> AsyncResult:
    """Run the log's steps in batched levels; the models at the evaluation times ``eval_s`` (ascending).
    ``before_level`` is told each level before its local steps (e.g. which devices' batch counts advance)."""
    levels, merges = plan_levels(log)
    n = x.shape[0]
    windows = snapshot_windows(log, eval_s)
    snapshots = torch.empty((len(eval_s), *x.shape), dtype=x.dtype)
    for j in range(n):
        first, last = windows[0, j]
        snapshots[first:last, j] = x[j]
    pool: torch.Tensor | None = None
    used = np.zeros(len(merges), dtype=bool)
    first_merge = 0
    for level in levels:
        active = torch.from_numpy(level.step >= 0)
        before_level(level)
        x, state = algorithm.local(x, state, grad_fn, active)
        message = algorithm.message(x, state)
        if pool is None:
            pool = torch.zeros((log.step_end_s.shape[0] * n, message.shape[1]), dtype=message.dtype)
        devices = np.flatnonzero(level.step >= 0)
        pool[level.step[devices] * n + devices] = message[devices]
        present = torch.from_numpy(level.sender >= 0)
        row = torch.from_numpy(np.where(level.sender >= 0, level.sent_step * n + level.sender, -1))
        inbox = Inbox(torch.from_numpy(level.sender), present, row, pool, torch.from_numpy(level.step))
        x, state, taken = algorithm.merge(x, state, inbox, active)
        count = int(present.sum())  # this level's merges, in (receiver, rank) order as taken.T[present.T]
        used[first_merge:first_merge + count] = taken.T[present.T].numpy()
        first_merge += count
        for j in devices:
            first, last = windows[level.step[j] + 1, j]
            snapshots[first:last, j] = x[j]
        after_level(level, x)
    return AsyncResult(snapshots, merges.select(used), len(levels), state)


def staleness(used: Merges, log: MessageLog, local_steps: int | np.ndarray) -> np.ndarray:
    """(M, 2) per used merge: the sender's local steps since it sent the message, when the receiver merged it,
    and the message's age in seconds (merge time minus send time). ``local_steps``: per message, or (K, N) the
    count before each device's k-th message."""
    counts = np.broadcast_to(np.asarray(local_steps), log.step_end_s.shape)
    done = np.vstack([np.zeros((1, counts.shape[1])), np.cumsum(counts, axis=0)])  # local steps by its k-th end
    ended = log.step_end_s[:, used.sender]  # the sender's steps that ended by the merge, less those by the send
    by_merge, by_send = (ended <= used.merged_s[None, :]).sum(axis=0), (ended <= used.sent_s[None, :]).sum(axis=0)
    sender_steps = done[by_merge, used.sender] - done[by_send, used.sender]
    return np.stack([sender_steps, used.merged_s - used.sent_s], axis=-1).astype(float)
