"""D-PSGD with one-way mixing: an ablation between D-PSGD (Lian et al., NeurIPS 2017) and its asynchronous
reading (``async_dpsgd``). It changes one thing only: which links are mixed.

Each round every device computes a stochastic gradient at its own model, broadcasts its model with its degree,
and combines what it heard *this round*, whether or not its own message reached the sender::

    x_j <- w_jj x_j + sum_{i -> j} w_ji x_i - lr * g_j(x_j),   w_ji = 1 / (1 + max(d_i, d_j)),
    w_jj = 1 - sum_i w_ji

over the senders i that j heard this round (mask[i, j]); d_j is the number of senders j heard this round and
d_i the degree i reported in its message (the senders i heard the round before: a message leaves before its
sender knows this round's receipts; 0 in the first round). The matrix is row-stochastic on the one-way
heard graph, as ``async_dpsgd``'s is, not doubly stochastic as D-PSGD's two-way Metropolis-Hastings weights
are, so the average is not preserved. What stays D-PSGD's: the round's deadline, fresh messages only, the
gradient at the pre-mix model. Payload: d x 4 + 4 bytes (the model and the degree).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, dense


def one_way_weights(heard: torch.Tensor, reported: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """W[i, j] = w_ji for the senders i that j heard (heard[i, j], i != j), the rest on the diagonal; rows of
    W.T sum to 1. ``reported`` (N,): each sender's degree as its message says."""
    heard = heard & ~torch.eye(heard.shape[0], dtype=torch.bool)
    degree = heard.sum(0).to(dtype)  # senders each receiver heard
    weights = torch.where(heard, 1.0 / (1.0 + torch.maximum(reported.to(dtype)[:, None], degree[None, :])), 0.0)
    return weights + torch.diag(1.0 - weights.sum(0))


@dataclass(frozen=True)
class DPSGDOneWay:
    lr: float = 0.1
    name: str = "dpsgd_one_way"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def messages(self, dim: int) -> tuple[Message]:
        return (Message((dense("model", dim), dense("degree", 1))),)

    def init(self, x: torch.Tensor, seed: int = 0, model=None) -> torch.Tensor:
        return torch.zeros(x.shape[0], dtype=x.dtype)  # the degree each device will report: none heard yet

    def step(self, x: torch.Tensor, state: torch.Tensor, grad_fn: GradFn, links: Links
             ) -> tuple[torch.Tensor, torch.Tensor]:
        grad = grad_fn(x)
        heard = links.exchange()
        weights = one_way_weights(heard, state, x.dtype)
        heard_now = (heard & ~torch.eye(x.shape[0], dtype=torch.bool)).sum(0).to(x.dtype)
        return weights.T @ x - self.lr * grad, heard_now
