"""D^2: decentralized training over decentralized data (Tang, Lian, Yan, Zhang & Liu, ICML 2018).

A variance-reduction extension of D-PSGD that removes the bias caused by
data that differ across devices. Round t, with W_t the Metropolis-Hastings
matrix of the round's exchange taken both ways (``mask & mask.T``) and
W~_t = (W_t + I) / 2 (eigenvalues in (0, 1], the paper needs > -1/3)::

    x_{t+1/2} = 2 x_t - x_{t-1} - lr g(x_t) + lr g(x_{t-1})   (t = 0: x_0 - lr g(x_0))
    x_{t+1}   = W~_t^T x_{t+1/2}

The first round mixes too, as in the paper's Algorithm 1 (whose summary
writes X_1 = X_0 - lr G_0 without mixing). The state keeps x_{t-1} and
g(x_{t-1}); starting from x_{-1} = x_0, g_{-1} = 0 makes t = 0 the same formula.

The paper assumes one fixed W. Here W_t changes with the delivered links, so
the exactness argument (the fixed point of a constant W) holds only while the
links are static; on a time-varying mask D^2 keeps the network average right
(every W_t is doubly stochastic) but may lose its bias correction. The 2 x_t - x_{t-1} recursion also
integrates rounding: in float32 the exact fixed point drifts by about 1e-7
per round on O(1) parameters (float64 stays at 1e-13), harmless at the
hundreds of rounds trained here.

Payload: x_{t+1/2}, d x 4 bytes, one exchange; one gradient per round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, model_message
from learner.mixing import metropolis_hastings


class D2State(NamedTuple):
    last_x: torch.Tensor  # x_{t-1}
    last_grad: torch.Tensor  # g(x_{t-1}), zero before the first round


@dataclass(frozen=True)
class D2:
    lr: float = 0.1
    name: str = "d2"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return model_message(dim)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> D2State:
        return D2State(x.clone(), torch.zeros_like(x))

    def step(self, x: torch.Tensor, state: D2State, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, D2State]:
        grad = grad_fn(x)
        half = 2 * x - state.last_x - self.lr * (grad - state.last_grad)
        weights = metropolis_hastings(links.exchange(), x.dtype)
        halved = (weights + torch.eye(x.shape[0], dtype=x.dtype)) / 2
        return halved.T @ half, D2State(x, grad)
