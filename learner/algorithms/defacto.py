"""DeFacto: decentralized SGD with factorized consensus matrices (Lu & De Sa, ICML 2021), reconstructed.

In the paper a phase alternates R iterations of sampling, whose gradients
are accumulated, with R iterations of communication through gossip matrices
W_1 ... W_R that *factorize exact averaging* (W_R ... W_1 = 11^T / N on the
graph, e.g. along a spanning tree). Every worker then applies the exact
global average of the phase's gradients, so all models stay equal: it is
mini-batch SGD with a phase-long batch, paid for in communication steps.

Reconstruction used here (the lossy network cannot be factorized in advance):
one round is one phase; the factors are the Metropolis-Hastings matrices W_r
of the R exchanges as they were delivered, taken both ways (``mask & mask.T``),
so their product averages only approximately (exactly only in the limit of
many steps over a connected graph)::

    G_k     = (1/B) sum_{b<B} g(x_k; xi_b)          B fresh mini-batches at x_k
    x_{k+1} = W_R^T ... W_1^T (x_k - lr G_k)

Gossiping the locally updated model x - lr G carries the accumulated gradient
and the model in one vector (the product of the W_r applied to x and to G
separately gives the same result) and pulls back models that the imperfect
averaging let drift apart. R = ``gossip_steps`` (fixed, no acceleration,
no tracking); B = ``grad_batches``, or R when 0 (one mini-batch per
communication step, as the paper's alternation of R and R iterations).

Payload: x - lr G, d x 4 bytes per exchange, R exchanges per round.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import (MAX_EXCHANGES_PER_ROUND, GradFn, Links, Message, check_integer, check_range,
                                     mean_gradient, model_message)
from learner.mixing import metropolis_hastings


@dataclass(frozen=True)
class DeFacto:
    lr: float = 0.1
    gossip_steps: int = 4  # R: exchanges per phase (= per round)
    grad_batches: int = 0  # B; 0 = one mini-batch per exchange (B = R)
    name: str = "defacto"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("gossip_steps", self.gossip_steps, 1, MAX_EXCHANGES_PER_ROUND)
        check_integer("grad_batches", self.grad_batches, 0, 1024)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return model_message(dim) * self.gossip_steps

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> None:
        return None

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        batches = self.grad_batches or self.gossip_steps
        z = x - self.lr * mean_gradient(grad_fn, x, batches)
        for _ in range(self.gossip_steps):
            z = metropolis_hastings(links.exchange(), x.dtype).T @ z
        return z, None
