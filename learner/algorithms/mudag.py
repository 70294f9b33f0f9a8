"""Mudag: multi-consensus decentralized accelerated gradient descent.

Paper: H. Ye, L. Luo, Z. Zhou, T. Zhang, "Multi-consensus Decentralized
Accelerated Gradient Descent", arXiv:2005.00797 (JMLR 2023).

Nesterov acceleration + gradient tracking + K steps of accelerated gossip::

    x(t+1) = FastMix(y(t) - lr * s(t), K)
    y(t+1) = x(t+1) + beta * (x(t+1) - x(t)),   beta = (1 - sqrt(mu lr)) / (1 + sqrt(mu lr))
    s(t+1) = FastMix(s(t) + g(y(t+1)) - g(y(t)), K)
    y(0) = x(0),  s(0) = g(y(0))

    FastMix(z, K): z_{-1} = z_0 = z;  z_{k+1} = (1 + eta_k) W_k^T z_k - eta_k z_{k-1}
                   eta_k = (1 - sqrt(1 - lambda_2(W_k)^2)) / (1 + sqrt(1 - lambda_2(W_k)^2))

(learner/mixing.py: ``fastmix``). Every FastMix step is one exchange through
the bridge with its own delivered mask, so a round declares 2K exchanges of
d x 4 bytes: K carrying x's iterate, then K carrying s's (s needs the gradient
at y(t+1), which needs x(t+1), so the two cannot travel together). W_k is the
Metropolis-Hastings matrix of ``mask & mask.T`` (doubly stochastic, so FastMix
keeps the network average that gradient tracking relies on).

As HyperPrism's comparison configures it (the defaults): condition number
kappa = 1 / (mu lr) = 10 (so beta = (1 - sqrt(1/kappa)) / (1 + sqrt(1/kappa))),
and W_k = I - L_k / lambda_max(L_k), L_k the Laplacian of the exchange's
two-way links (``learner/laplacian.py``); ``gossip = "metropolis"`` mixes with
Metropolis-Hastings instead (the earlier reconstruction).

Reconstructed: the paper assumes a static connected graph with known lambda_2;
here each FastMix step tunes eta_k to its own W_k, with lambda_2 the slowest
rate inside the connected components of that exchange (``spectral_lambda``).
g are stochastic mini-batch gradients (the paper uses full gradients); the
first round spends one extra gradient for s(0) = g(y(0)). mu, the
strong-convexity constant, is a hyperparameter that only sets beta. The model
the runner evaluates is x(t).

Measured, not assumed: on real ns-3 traces (lossy, often disconnected, a
different W_k every exchange) the Chebyshev momentum makes the consensus
distance grow without bound (accelerated gossip is not stable on networks
that change between steps; Kovalev et al. 2021 and Metelev et al. 2023 show
consensus acceleration is impossible there in the worst case). ``chebyshev =
false`` keeps everything else and mixes with K plain gossip steps (eta_k = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, dense, model_message
from learner.laplacian import laplacian_mixing
from learner.mixing import accelerated_gossip, fastmix, gossip_momentum, spectral_lambda


class MudagState(NamedTuple):
    y: torch.Tensor
    s: torch.Tensor | None  # the gradient tracker; None until the first round has drawn g(y(0))
    grad_y: torch.Tensor | None  # g(y(t)), kept for the tracking difference


@dataclass(frozen=True)
class Mudag:
    lr: float = 0.01
    kappa: float = 10.0  # condition number 1 / (mu lr) (HyperPrism's setting); sets the momentum beta
    mix_steps: int = 2  # K, FastMix steps (exchanges) per consensus
    chebyshev: bool = True  # FastMix's momentum eta_k; False: K plain gossip steps
    gossip: str = "laplacian"  # W_k = I - Laplacian / lambda_max (HyperPrism's setting), or "metropolis"
    name: str = "mudag"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("kappa", self.kappa, 1.0, 1e6, low_open=False)
        check_range("mix_steps", self.mix_steps, 1, 64, low_open=False)
        if self.gossip not in ("laplacian", "metropolis"):
            raise ValueError(f"gossip: {self.gossip!r} is not allowed; expected one of laplacian, metropolis")

    @property
    def momentum(self) -> float:
        root = (1.0 / self.kappa) ** 0.5
        return (1.0 - root) / (1.0 + root)

    def _mix(self, z: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
        if self.gossip == "metropolis":
            return fastmix(z, masks, self.chebyshev)
        weights = [laplacian_mixing(mask, z.dtype) for mask in masks]
        momenta = [gossip_momentum(spectral_lambda(w)) if self.chebyshev else 0.0 for w in weights]
        return accelerated_gossip(z, weights, momenta)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return model_message(dim) * self.mix_steps + (Message((dense("tracker", dim),)),) * self.mix_steps

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> MudagState:
        return MudagState(x.clone(), None, None)

    def step(self, x: torch.Tensor, state: MudagState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, MudagState]:
        y, s, grad_y = state
        if s is None:
            grad_y = grad_fn(y)
            s = grad_y
        x_new = self._mix(y - self.lr * s, [links.exchange() for _ in range(self.mix_steps)])
        y_new = x_new + self.momentum * (x_new - x)
        grad_new = grad_fn(y_new)
        s_new = self._mix(s + grad_new - grad_y, [links.exchange() for _ in range(self.mix_steps)])
        return x_new, MudagState(y_new, s_new, grad_new)
