# my_async_gossip.py
from dataclasses import dataclass

import torch

from learner.algorithms.base import Message, dense
from learner.asynchronous import EventReference, sgd_steps


class NewestMeanByEvent(EventReference):
    """One device, one event at a time (the tests hold the batched merge below to it)."""

    def merge(self, x_j, memory, inbox, draw):
        return (x_j + sum(payload[0] for _, payload in inbox)) / (1 + len(inbox)), memory, list(range(len(inbox)))


@dataclass(frozen=True)
class NewestMean:
    """Asynchronous: local SGD step(s), send the model, then the plain mean of the own model and every model
    received since the last merge (each device on its own clock, ``schedule = "async"``)."""

    lr: float = 0.1
    local_steps: int = 1
    name: str = "my_async_gossip:NewestMean"

    def __post_init__(self):
        if not 0.0 < self.lr <= 10.0:
            raise ValueError(f"lr: {self.lr!r} is outside (0, 10]")
        if not isinstance(self.local_steps, int) or not 1 <= self.local_steps <= 100:
            raise ValueError(f"local_steps: {self.local_steps!r} is not an integer in [1, 100]")

    def messages(self, dim):
        return (Message((dense("model", dim),)),)  # what message() returns: (N, dim)

    def init(self, x, seed=0, model=None):
        return None

    def local(self, x, state, grad_fn, active):
        return sgd_steps(x, grad_fn, self.lr, self.local_steps, active), state

    def message(self, x, state):
        return x

    def merge(self, x, state, inbox, active):
        used = inbox.present & active[None, :]  # (R, N): the r-th message each active device received
        ranks, receivers = torch.nonzero(used, as_tuple=True)
        total = x + inbox.combine(inbox.row[ranks, receivers], receivers, torch.ones(len(ranks)), *x.shape)
        return total / (1.0 + used.sum(0))[:, None].to(x.dtype), state, used

    def reference(self):
        return NewestMeanByEvent(self)
