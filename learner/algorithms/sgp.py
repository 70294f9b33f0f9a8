"""SGP: stochastic gradient push (Assran, Loizou, Ballas & Rabbat, ICML 2019).

Push-sum on the *directed* delivered mask as it is, no symmetrisation. Each
device keeps a numerator u_i and a push-sum weight w_i (w_0 = 1); its model
is the de-biased ratio z_i = u_i / w_i, which is what ``step`` takes and
returns (the state holds w). Round t, with P_t = ``push_sum_weights`` of the
round's mask::

    u_{t+1/2} = u_t - lr g(z_t)            (u_t = w_t z_t)
    u_{t+1}   = P_t^T u_{t+1/2}
    w_{t+1}   = P_t^T w_t
    z_{t+1}   = u_{t+1} / w_{t+1}

Sender i splits (u_i, w_i) equally between itself and the devices that
received it. Mass sent over a link that did not deliver stays with the
sender: the sender is assumed to learn who received (the testbed knows; a
real broadcast would need acknowledgements, whose traffic is not simulated).
So sum_i u_i and sum_i w_i are conserved by every exchange, and the ratio
averages without the bias of receiver-mean averaging on a directed mask.
Not conserving it (a lost message's share simply vanishing) would bias the
average toward devices whose messages get through.

Payload: u_i and w_i, (d + 1) x 4 bytes, one exchange; one gradient per round.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, dense
from learner.mixing import push_sum_weights


@dataclass(frozen=True)
class SGP:
    lr: float = 0.1
    name: str = "sgp"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return (Message((dense("numerator", dim), dense("weight", 1))),)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> torch.Tensor:
        return torch.ones(x.shape[0], 1, dtype=x.dtype)

    def step(self, x: torch.Tensor, state: torch.Tensor, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, torch.Tensor]:
        numerators = x * state - self.lr * grad_fn(x)
        shares = push_sum_weights(links.exchange(), x.dtype)
        weights = shares.T @ state
        return (shares.T @ numerators) / weights, weights
