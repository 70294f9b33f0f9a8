"""Asynchronous D-PSGD: D-PSGD's Metropolis-Hastings average over the newest model heard from each neighbour,
whatever its age (the asynchronous reading of Lian et al., NeurIPS 2017, on the message core).

Each device keeps the newest model it received from every sender, V[j, i], with the sender's step count
and degree as the message reported them, and at the end of each of its steps (local step, send, merge)::

    x_j <- w_jj x_j + sum_{i heard by j} w_ji V[j, i]

with Metropolis-Hastings weights from what j knows: w_ji = 1 / (1 + max(d_i, d_j)), d_j the senders j has
heard so far, d_i the degree i reported in its newest message (each message carries its sender's step count
and degree, 8 bytes), w_jj = 1 - sum_i w_ji. No barrier and no deadline: a neighbour's model is used however
stale it is (its staleness is recorded per merge). Reconstruction: the synchronous W is symmetric and doubly
stochastic on each round's two-way links; here a device only knows whom it heard, so W is row-stochastic on
the one-way "heard" graph, which only grows, and the average is not preserved exactly. Payload: d x 4 + 8
bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from learner.algorithms.base import GradFn, Message, check_integer, check_range, dense
from learner.asynchronous import EventReference, Inbox, sgd_steps


class AsyncDPSGDByEvent(EventReference):
    """Keep the newest model from each sender (by its step count); x_j <- w_jj x_j + sum_i w_ji V[j, i] with
    w_ji = 1 / (1 + max(d_i, d_j)) over the senders heard so far."""

    def start(self, x_j):
        return {"steps": 0.0, "newest": {}}  # sender -> (model, its steps, its degree)

    def local(self, x_j, memory, device_grad):
        x_j, memory = super().local(x_j, memory, device_grad)
        return x_j, {**memory, "steps": memory["steps"] + 1}

    def send(self, x_j, memory):
        return (x_j.clone(), memory["steps"], float(len(memory["newest"])))

    def merge(self, x_j, memory, inbox, draw):
        newest = dict(memory["newest"])
        for sender, (model, their_steps, their_degree) in inbox:
            if sender not in newest or their_steps > newest[sender][1]:
                newest[sender] = (model, their_steps, their_degree)
        degree = len(newest)
        weights = {i: 1.0 / (1.0 + max(degree, d)) for i, (_, _, d) in newest.items()}
        x_j = (1 - sum(weights.values())) * x_j + sum(w * newest[i][0] for i, w in weights.items())
        return x_j, {**memory, "newest": newest}, list(range(len(inbox)))


@dataclass(frozen=True)
class AsyncState:
    newest: torch.Tensor  # (N, N) long [receiver, sender]: the newest message received from each (-1: none yet)
    newest_steps: torch.Tensor  # (N, N): its sender's step count then
    newest_degree: torch.Tensor  # (N, N): the degree its sender reported then
    steps: torch.Tensor  # (N,): each device's own step count

    @property
    def degree(self) -> torch.Tensor:
        """(N,): how many senders each device has heard."""
        return (self.newest >= 0).sum(1).to(self.steps.dtype)


@dataclass(frozen=True)
class AsyncDPSGD:
    lr: float = 0.1
    name: str = "async_dpsgd"
    local_steps: int = 1

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("local_steps", self.local_steps, 1, 1000)

    def messages(self, dim: int) -> tuple[Message]:
        return (Message((dense("model", dim), dense("steps", 1), dense("degree", 1))),)

    def init(self, x: torch.Tensor, seed: int = 0) -> AsyncState:
        """V[j, i] is kept as a reference to the message (its row in the engine's pool of sent messages)."""
        n = x.shape[0]
        return AsyncState(torch.full((n, n), -1, dtype=torch.long), torch.full((n, n), -1.0, dtype=x.dtype),
                          torch.zeros(n, n, dtype=x.dtype), torch.zeros(n, dtype=x.dtype))

    def local(self, x: torch.Tensor, state: AsyncState, grad_fn: GradFn,
              active: torch.Tensor) -> tuple[torch.Tensor, AsyncState]:
        x = sgd_steps(x, grad_fn, self.lr, self.local_steps, active)
        return x, replace(state, steps=state.steps + active.to(x.dtype))

    def message(self, x: torch.Tensor, state: AsyncState) -> torch.Tensor:
        return torch.cat([x, state.steps[:, None], state.degree[:, None]], dim=1)

    def merge(self, x: torch.Tensor, state: AsyncState, inbox: Inbox,
              active: torch.Tensor) -> tuple[torch.Tensor, AsyncState, torch.Tensor]:
        n, dim = x.shape
        newest, newest_steps, newest_degree = state.newest.clone(), state.newest_steps.clone(), state.newest_degree.clone()
        their_steps, their_degree = inbox.scalars(dim), inbox.scalars(dim + 1)
        ranks, receivers = torch.nonzero(inbox.present & active[None, :], as_tuple=True)
        pair = receivers * n + inbox.sender[ranks, receivers]  # (receiver, sender) of each message merged
        steps = their_steps[ranks, receivers]
        newest_of_pair = torch.full((n * n,), -math.inf, dtype=x.dtype).scatter_reduce(0, pair, steps, "amax")
        take = (steps == newest_of_pair[pair]) & (steps > newest_steps.view(-1)[pair])  # newer than what it held
        newest.view(-1)[pair[take]] = inbox.row[ranks[take], receivers[take]]
        newest_steps.view(-1)[pair[take]] = steps[take]
        newest_degree.view(-1)[pair[take]] = their_degree[ranks[take], receivers[take]]
        state = AsyncState(newest, newest_steps, newest_degree, state.steps)
        heard = newest >= 0  # [receiver, sender]
        weights = torch.where(heard, 1.0 / (1.0 + torch.maximum(state.degree[:, None], newest_degree)), 0.0)
        mixing, sources = torch.nonzero(heard & active[:, None], as_tuple=True)
        mixed = (1.0 - weights.sum(1))[:, None] * x + inbox.combine(newest[mixing, sources], mixing,
                                                                    weights[mixing, sources], n, dim)
        return torch.where(active[:, None], mixed, x), state, inbox.present & active[None, :]

    def reference(self) -> EventReference:
        return AsyncDPSGDByEvent(self)
