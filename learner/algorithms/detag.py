"""DeTAG: decentralized gradient tracking with accelerated gossip and phased gradient accumulation
(Lu & De Sa, "Optimal Complexity in Decentralized Training", ICML 2021).

One round of the testbed is one phase k. With AG_R the accelerated gossip of
``learner.mixing.accelerated_gossip`` (R exchanges, each with its own mask)::

    G_k     = (1/B) sum_{b<B} g(x_k; xi_b)          B fresh mini-batches at x_k
    [X^, Y^] = AG_R([X_k, Y_k])                      model and tracker gossip together
    X_{k+1} = X^ - lr * Y^
    Y_{k+1} = Y^ + G_k - G_{k-1}                     (Y_0 = 0, G_{-1} = 0)

AG_R step r: Z_{r+1} = (1 + eta) W_r^T Z_r - eta Z_{r-1}, Z_{-1} = Z_0, with W_r
the Metropolis-Hastings matrix of exchange r taken both ways (``mask & mask.T``)
and eta = (1 - sqrt(1 - lambda^2)) / (1 + sqrt(1 - lambda^2)).

Choices, stated:
- lambda (and so eta) comes from W_0, the matrix of the phase's first
  exchange: the largest |eigenvalue| of W_0 off the consensus vectors of its
  connected components (``spectral_lambda``; the second-largest |eigenvalue|
  when the delivered graph is connected). The later exchanges of the phase
  have their own masks, hence their own W_r, and reuse this eta.
- R = ``gossip_steps`` if set, else ceil(0.5 ln N / sqrt(1 - lambda)) clipped
  to [1, ``gossip_steps_max``]. The trace is simulated offline for
  ``gossip_steps_max`` exchanges per round; a phase uses only its first R, and
  the simulated clock counts only those.
- Y tracks the phase-accumulated gradient one phase late: the gradients sampled
  in phase k enter the step of phase k + 1 (the first phase only gossips). This
  is the authors' released implementation, where gradients are sampled while
  the gossip runs; the model step uses the gossiped tracker Y^ as there
  (the paper's pseudo-code writes Y_k; both keep the optimum as the fixed point).
- G_k is the *mean* of the B mini-batch gradients (the authors' implementation
  divides by the phase's oracle budget), so ``lr`` means the same as in DSGT;
  the sum in the paper's pseudo-code is the same rule with lr / B. B =
  ``grad_batches`` if set, else one mini-batch per gossip step of the phase
  (B = R), each a ``grad_fn`` call.

Payload: model and tracker in every gossip step, 2 x d x 4 bytes per exchange.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from learner.algorithms.base import (MAX_EXCHANGES_PER_ROUND, GradFn, Links, Message, check_integer, check_range,
                                     dense, mean_gradient)
from learner.mixing import accelerated_gossip, gossip_momentum, metropolis_hastings, spectral_lambda

class DeTAGState(NamedTuple):
    tracker: torch.Tensor  # Y_k
    last_grad: torch.Tensor  # G_{k-1}, the previous phase's accumulated gradient


def default_gossip_steps(devices: int, lam: float, cap: int) -> int:
    """R = ceil(0.5 ln N / sqrt(1 - lambda)), clipped to [1, cap] (lambda = 1 gives the cap)."""
    if lam >= 1.0:
        return cap
    return max(1, min(cap, math.ceil(0.5 * math.log(devices) / math.sqrt(1.0 - lam))))


@dataclass(frozen=True)
class DeTAG:
    lr: float = 0.1
    gossip_steps: int = 0  # R; 0 = from the spectral gap of the phase's first exchange
    gossip_steps_max: int = 4  # exchanges per round in the offline trace; caps R
    grad_batches: int = 0  # B; 0 = one mini-batch per gossip step (B = R)
    name: str = "detag"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("gossip_steps_max", self.gossip_steps_max, 1, MAX_EXCHANGES_PER_ROUND)
        check_integer("gossip_steps", self.gossip_steps, 0, self.gossip_steps_max)
        check_integer("grad_batches", self.grad_batches, 0, 1024)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return (Message((dense("model", dim), dense("tracker", dim))),) * (self.gossip_steps or self.gossip_steps_max)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> DeTAGState:
        return DeTAGState(torch.zeros_like(x), torch.zeros_like(x))

    def step(self, x: torch.Tensor, state: DeTAGState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, DeTAGState]:
        n, dim = x.shape
        weights = [metropolis_hastings(links.exchange(), x.dtype)]
        lam = spectral_lambda(weights[0])
        steps = self.gossip_steps or default_gossip_steps(n, lam, self.gossip_steps_max)
        weights += [metropolis_hastings(links.exchange(), x.dtype) for _ in range(steps - 1)]

        batches = self.grad_batches or steps
        grad = mean_gradient(grad_fn, x, batches)

        mixed = accelerated_gossip(torch.cat([x, state.tracker], 1), weights, gossip_momentum(lam))
        mixed_x, mixed_tracker = mixed[:, :dim], mixed[:, dim:]
        return mixed_x - self.lr * mixed_tracker, DeTAGState(mixed_tracker + grad - state.last_grad, grad)
