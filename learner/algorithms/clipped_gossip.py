"""ClippedGossip (He, Karimireddy & Jaggi, "Byzantine-robust decentralized learning via ClippedGossip", 2022)::

    x_j' = x_j - lr * g_j(x_j)                       (the local step first)
    x_j <- x_j' + sum_i W_ij clip(x_i' - x_j', tau_j)   clip(z, tau) = z * min(1, tau / ||z||)

W: Metropolis-Hastings weights on the round's two-way delivered links (as D-PSGD); the messages carry x_i'.
tau_j = ``radius`` when > 0; otherwise adaptive: the (b + 1)-th largest distance among j's neighbours this
round (b = ``byzantine``), so the b farthest are clipped (``learner.robust.clipped_gossip``; our reading of the
paper's adaptive rule, which clips the farthest neighbours holding the estimated Byzantine weight). **Fewer
than b + 1 neighbours**: tau_j = 0, the device keeps its local step. Payload: the dense float32 model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, StatelessDenseModel, carried, check_integer, check_range
from learner.mixing import metropolis_hastings
from learner.robust import clipped_gossip


@dataclass(frozen=True)
class ClippedGossip(StatelessDenseModel):
    lr: float = 0.1
    byzantine: int = 1  # b: neighbours the adaptive radius clips
    radius: float = 0.0  # > 0: a fixed clipping radius tau instead
    name: str = "clipped_gossip"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("byzantine", self.byzantine, 0, 500)
        check_range("radius", self.radius, 0.0, 1e6, low_open=False)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        half = x - self.lr * grad_fn(x)
        mask = links.exchange()
        weights = metropolis_hastings(mask, x.dtype)
        return clipped_gossip(half, carried(links, half, mask), weights, self.byzantine, self.radius), None
