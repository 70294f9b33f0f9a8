"""SwarmSGD: local SGD steps, then pairwise averaging along random delivered links.

Paper: G. Nadiradze, A. Sabour, P. Davies, S. Li, D. Alistarh, "Asynchronous
Decentralized SGD with Quantized and Local Updates", NeurIPS 2021.

Round t::

    x_i <- x_i - lr * g_i(x_i)            H times (local steps on its own shard)
    exchange the local models (d x 4 bytes)
    for every pair {i, j} of a random matching of the two-way delivered links:
        x_i, x_j <- (x_i + x_j) / 2
    unmatched devices keep their local model

Reconstructed for a round-based, trace-driven testbed: the original is
asynchronous (one random edge of a fixed graph interacts at a time) and may
quantize the models. Here all devices step in lock-step and every round picks a
random maximal matching of the links that delivered both ways in this round's
exchange (``mask & mask.T``: both partners must hold the other's model), so
many disjoint pairs interact at once; no quantization. The matching is drawn
from a generator seeded by ``init``'s seed whose state lives in the algorithm
state, and depends only on the mask, never on the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, model_message
from learner.mixing import random_matching, symmetric_links


@dataclass(frozen=True)
class SwarmSGD:
    lr: float = 0.01
    local_steps: int = 2  # H
    name: str = "swarmsgd"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("local_steps", self.local_steps, 1, 1000, low_open=False)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return model_message(dim)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> torch.Tensor:
        """The state is the matching generator's state (a byte tensor)."""
        return torch.Generator().manual_seed(seed).get_state()

    def step(self, x: torch.Tensor, state: torch.Tensor, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(self.local_steps):
            x = x - self.lr * grad_fn(x)
        generator = torch.Generator()
        generator.set_state(state)
        partner = random_matching(symmetric_links(links.exchange()), generator)
        matched = partner >= 0
        averaged = torch.where(matched[:, None], (x + x[partner.clamp(min=0)]) / 2, x)
        return averaged, generator.get_state()
