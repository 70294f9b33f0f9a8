"""D-PSGD: decentralized parallel SGD (Lian et al., NeurIPS 2017).

Each round every device computes a stochastic gradient at its own model,
broadcasts its model, and combines what it received::

    x_j <- sum_i W_ij x_i - lr * g_j(x_j)

W is the Metropolis-Hastings matrix of the links that delivered in this
round's exchange, taken both ways (``mask & mask.T``) so W stays doubly
stochastic; a device that heard nobody just takes its local step.
Payload: the dense float32 model, d x 4 bytes. With Byzantine devices (``learner.byzantine``) x_i is what i's
message carried, the receiver's own term its own model: the plain mean that the robust rules are measured
against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, StatelessDenseModel, carried, check_range
from learner.mixing import metropolis_hastings


@dataclass(frozen=True)
class DPSGD(StatelessDenseModel):
    lr: float = 0.1
    name: str = "dpsgd"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        grad = grad_fn(x)
        mask = links.exchange()
        weights = metropolis_hastings(mask, x.dtype)
        sent = carried(links, x, mask)
        if sent is x:
            return weights.T @ x - self.lr * grad, None
        return weights.T @ sent + torch.diagonal(weights)[:, None] * (x - sent) - self.lr * grad, None
