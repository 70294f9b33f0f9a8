"""D-PSGD over a last-heard cache: the second ablation between D-PSGD (Lian et al., NeurIPS 2017) and its
asynchronous reading (``async_dpsgd``). On top of ``dpsgd_one_way`` it changes one more thing: stale models.

Each device keeps the newest model it has received from every sender, in any round so far, V[j, i], with the
degree the sender reported then. Each round every device computes a stochastic gradient at its own model,
broadcasts its model and its degree, updates its cache with what it heard this round, and combines the
cache::

    x_j <- w_jj x_j + sum_{i in cache(j)} w_ji V[j, i] - lr * g_j(x_j),   w_ji = 1 / (1 + max(d_i, d_j)),
    w_jj = 1 - sum_i w_ji

d_j the senders j has heard so far, d_i the degree i reported with its newest message (the senders i had
heard by the round before it sent). These are ``async_dpsgd``'s weights and cache; what stays D-PSGD's is the
round: everyone steps together, behind the round's deadline, the gradient at the pre-mix model. So the chain
dpsgd -> dpsgd_one_way -> dpsgd_cached -> async_dpsgd separates two-way mixing, fresh messages and the
deadline. Memory: the cache holds N x N models (4 N^2 d bytes; refused above 2 GiB). Payload: d x 4 + 4 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, dense

CACHE_LIMIT_BYTES = 2 << 30


@dataclass(frozen=True)
class Cache:
    models: torch.Tensor  # (N, N, d) [receiver, sender]: the newest model heard from each sender
    heard: torch.Tensor  # (N, N) bool [sender, receiver]: ever heard
    reported: torch.Tensor  # (N, N) [sender, receiver]: the degree the sender reported with that model
    degree: torch.Tensor  # (N,): senders each device had heard by the end of the previous round (what it reports)


@dataclass(frozen=True)
class DPSGDCached:
    lr: float = 0.1
    name: str = "dpsgd_cached"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def messages(self, dim: int) -> tuple[Message]:
        return (Message((dense("model", dim), dense("degree", 1))),)

    def init(self, x: torch.Tensor, seed: int = 0, model=None) -> Cache:
        n, d = x.shape
        if n * n * d * x.element_size() > CACHE_LIMIT_BYTES:
            raise ValueError(f"dpsgd_cached keeps {n} x {n} models of {d} parameters "
                             f"({n * n * d * x.element_size() / 2**30:.1f} GiB), above its 2 GiB limit; "
                             f"use fewer devices or a smaller model")
        return Cache(torch.zeros((n, n, d), dtype=x.dtype), torch.zeros((n, n), dtype=torch.bool),
                     torch.zeros((n, n), dtype=x.dtype), torch.zeros(n, dtype=x.dtype))

    def step(self, x: torch.Tensor, state: Cache, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, Cache]:
        grad = grad_fn(x)
        now = links.exchange() & ~torch.eye(x.shape[0], dtype=torch.bool)
        models = torch.where(now.T[:, :, None], x[None, :, :], state.models)  # [receiver, sender]
        reported = torch.where(now, state.degree[:, None], state.reported)
        heard = state.heard | now
        degree = heard.sum(0).to(x.dtype)
        weights = torch.where(heard, 1.0 / (1.0 + torch.maximum(reported, degree[None, :])), 0.0)  # [i, j]
        mixed = (1.0 - weights.sum(0))[:, None] * x + torch.einsum("ij,jid->jd", weights, models)
        return mixed - self.lr * grad, Cache(models, heard, reported, degree)
