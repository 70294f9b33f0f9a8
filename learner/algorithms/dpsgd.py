"""D-PSGD: decentralized parallel SGD (Lian et al., NeurIPS 2017).

Each round every device computes a stochastic gradient at its own model,
broadcasts its model, and combines what it received::

    x_j <- sum_i W_ij x_i - lr * g_j(x_j)

W is the Metropolis-Hastings matrix of the links that delivered in this
round's exchange, taken both ways (``mask & mask.T``) so W stays doubly
stochastic; a device that heard nobody just takes its local step.
Payload: the dense float32 model, d x 4 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, StatelessDenseModel, check_range
from learner.mixing import metropolis_hastings


@dataclass(frozen=True)
class DPSGD(StatelessDenseModel):
    lr: float = 0.1
    name: str = "dpsgd"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        grad = grad_fn(x)
        weights = metropolis_hastings(links.exchange(), x.dtype)
        return weights.T @ x - self.lr * grad, None
