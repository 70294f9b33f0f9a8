"""Decentralized (multi-)Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, "Machine learning with adversaries:
Byzantine tolerant gradient descent", NeurIPS 2017), per neighbourhood::

    x_j <- mean of the ``select`` values of {x_j} U {x_i : j received i} with the lowest Krum scores
           - lr * g_j(x_j)

score(v) = the sum of squared distances from v to its m - f - 2 nearest other values (f = ``byzantine``,
``learner.robust.krum``). Reconstruction: the server rule over each device's own model and the models it
received, D-PSGD's order. **Krum needs m > 2f + 2 values**: a device with fewer keeps its own model and takes
its local step. Payload: the dense float32 model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, StatelessDenseModel, carried, check_integer, check_range
from learner.robust import candidates, krum


@dataclass(frozen=True)
class Krum(StatelessDenseModel):
    lr: float = 0.1
    byzantine: int = 1  # f: the Byzantine neighbours each device assumes
    select: int = 1  # values averaged (1: Krum; more: multi-Krum)
    name: str = "krum"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("byzantine", self.byzantine, 0, 500)
        check_integer("select", self.select, 1, 1000)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        grad = grad_fn(x)
        mask = links.exchange()
        values, valid = candidates(x, carried(links, x, mask), mask)
        return krum(values, valid, self.byzantine, self.select) - self.lr * grad, None
