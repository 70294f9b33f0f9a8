"""DSGT: decentralized stochastic gradient tracking (Pu & Nedic, Math. Programming 2021;
the deterministic form is Qu & Li 2018, Nedic, Olshevsky & Shi 2017).

Each device keeps a tracker y of the network's average gradient next to its
model. Round t, with W_t the Metropolis-Hastings matrix of the round's
exchange taken both ways (``mask & mask.T``, doubly stochastic)::

    y_t     = W_{t-1} y_{t-1} + g(x_t) - g(x_{t-1})      (y_0 = g(x_0))
    x_{t+1} = W_t x_t - lr * y_t

Because every W_t is doubly stochastic, mean_i y_t = mean_i g_i(x_t) holds in
every round however the links fail, so the fixed point is the optimum of the
*average* loss: no heterogeneity bias (D-PSGD keeps one).

Payload: x and y travel together in one exchange, 2 x d x 4 bytes. One
gradient (one mini-batch) per round. The state holds W_{t-1} y_{t-1} and
g(x_{t-1}), so each round draws exactly one gradient at the current model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, dense
from learner.mixing import metropolis_hastings


class DSGTState(NamedTuple):
    mixed_tracker: torch.Tensor  # W_{t-1}^T y_{t-1}, zero before the first round
    last_grad: torch.Tensor  # g(x_{t-1}), zero before the first round


@dataclass(frozen=True)
class DSGT:
    lr: float = 0.1
    name: str = "dsgt"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return (Message((dense("model", dim), dense("tracker", dim))),)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> DSGTState:
        return DSGTState(torch.zeros_like(x), torch.zeros_like(x))

    def step(self, x: torch.Tensor, state: DSGTState, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, DSGTState]:
        grad = grad_fn(x)
        tracker = state.mixed_tracker + grad - state.last_grad
        weights = metropolis_hastings(links.exchange(), x.dtype)
        return weights.T @ x - self.lr * tracker, DSGTState(weights.T @ tracker, grad)
