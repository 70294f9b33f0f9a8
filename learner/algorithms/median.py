"""Decentralized coordinate-wise median (Yin, Chen, Ramchandran & Bartlett, ICML 2018), each device over its own
model and the models it received this round::

    x_j <- Median({x_j} U {x_i : j received i}) - lr * g_j(x_j)

(``learner.robust.coordinate_median``; an even count: the mean of the two middle values). Reconstruction: the
paper's server rule applied per neighbourhood, D-PSGD's order. **Any number of values works**: with its own
model alone a device keeps it. Payload: the dense float32 model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, StatelessDenseModel, carried, check_range
from learner.robust import candidates, coordinate_median


@dataclass(frozen=True)
class CoordinateMedian(StatelessDenseModel):
    lr: float = 0.1
    name: str = "median"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        grad = grad_fn(x)
        mask = links.exchange()
        values, valid = candidates(x, carried(links, x, mask), mask)
        return coordinate_median(values, valid) - self.lr * grad, None
