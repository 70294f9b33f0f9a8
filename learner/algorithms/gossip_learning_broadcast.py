"""Gossip learning read for broadcast (``gossip_learning_broadcast``); the published form, one message to one
peer and an update on each receipt, is ``gossip_learning`` (Hegedűs, Danner & Jelasity, "Gossip learning as a
decentralized alternative to federated learning", DAIS 2019; "Decentralized learning works", JPDC 2021).

Every node keeps a model x with an age a (the updates it embodies). Periodically it sends (x, a) to a peer;
on receiving (x_r, a_r) it merges, weighting by age, and updates::

    x <- (a x + a_r x_r) / (a + a_r);   a <- max(a, a_r)      (equal weights while both ages are 0)
    x <- x - lr * g(x);                 a <- a + 1

Reconstructed for broadcast 802.11a (``schedule = "async"``, ``learner.asynchronous``): a send reaches every
neighbour that receives it (not one peer); a device merges each message received since its last merge, one
after the other in arrival order, and takes its local step at the start of its next step (local step, send,
merge). Payload: the dense float32 model and its age, d x 4 + 4 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Message, check_integer, check_range, dense
from learner.asynchronous import EventReference, Inbox, sgd_steps


class GossipByEvent(EventReference):
    """The paper's node: age a; each receipt merges x <- (a x + a_r x_r) / (a + a_r), a <- max(a, a_r)."""

    def start(self, x_j):
        return {"age": 0.0}

    def local(self, x_j, memory, device_grad):
        x_j, memory = super().local(x_j, memory, device_grad)
        return x_j, {"age": memory["age"] + self.algorithm.local_steps}

    def send(self, x_j, memory):
        return (x_j.clone(), memory["age"])

    def merge(self, x_j, memory, inbox, draw):
        age = memory["age"]
        for _, (model, their_age) in inbox:
            mine = age / (age + their_age) if age + their_age > 0 else 0.5
            x_j = mine * x_j + (1 - mine) * model
            age = max(age, their_age)
        return x_j, {"age": age}, list(range(len(inbox)))


@dataclass(frozen=True)
class GossipLearningBroadcast:
    lr: float = 0.1
    name: str = "gossip_learning_broadcast"
    local_steps: int = 1

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("local_steps", self.local_steps, 1, 1000)

    def messages(self, dim: int) -> tuple[Message]:
        return (Message((dense("model", dim), dense("age", 1))),)

    def init(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The state is each model's age (N,)."""
        return torch.zeros(x.shape[0], dtype=x.dtype)

    def local(self, x: torch.Tensor, age: torch.Tensor, grad_fn: GradFn,
              active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return sgd_steps(x, grad_fn, self.lr, self.local_steps, active), age + active.to(age.dtype) * self.local_steps

    def message(self, x: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, age[:, None]], dim=1)

    def merge(self, x: torch.Tensor, age: torch.Tensor, inbox: Inbox,
              active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The sequential merges x <- m x + (1 - m) x_r, in arrival order, as one weighted sum: each merge scales
        the weights so far by m and gives the new message 1 - m."""
        n, dim = x.shape
        their_age = inbox.scalars(dim)
        merging = inbox.present & active[None, :]
        own = torch.ones(n, dtype=x.dtype)
        weights = torch.zeros(merging.shape, dtype=x.dtype)
        for r in range(merging.shape[0]):
            here = merging[r]
            total = age + their_age[r]
            mine = torch.where(total > 0, age / total.clamp(min=1e-30), torch.full_like(age, 0.5))
            own = torch.where(here, own * mine, own)
            weights[:r] = torch.where(here[None, :], weights[:r] * mine[None, :], weights[:r])
            weights[r] = torch.where(here, 1 - mine, 0.0)
            age = torch.where(here, torch.maximum(age, their_age[r]), age)
        ranks, receivers = torch.nonzero(merging, as_tuple=True)
        merged = inbox.combine(inbox.row[ranks, receivers], receivers, weights[ranks, receivers], n, dim)
        return torch.where(merging.any(0)[:, None], own[:, None] * x + merged, x), age, merging

    def reference(self) -> EventReference:
        return GossipByEvent(self)
