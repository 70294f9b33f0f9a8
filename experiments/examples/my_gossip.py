# my_gossip.py
from dataclasses import dataclass

import torch

from learner.algorithms.base import Message, dense


@dataclass(frozen=True)
class NeighbourMean:
    """Local SGD step, then the plain mean of the models each device heard (itself included)."""

    lr: float = 0.1
    name: str = "my_gossip:NeighbourMean"

    def __post_init__(self):
        if not 0.0 < self.lr <= 10.0:
            raise ValueError(f"lr: {self.lr!r} is outside (0, 10]")

    def messages(self, dim):
        return (Message((dense("model", dim),)),)  # one float32 model per round: 4 d bytes on the air

    def init(self, x, seed=0, model=None):
        return None

    def step(self, x, state, grad_fn, links):
        x = x - self.lr * grad_fn(x)
        heard = links.exchange().to(x.dtype)  # heard[i, j]: j received i's declared message
        heard.fill_diagonal_(1.0)
        return (heard.T @ x) / heard.sum(0)[:, None], None
