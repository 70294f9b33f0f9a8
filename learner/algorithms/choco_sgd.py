"""CHOCO-SGD (Koloskova, Stich & Jaggi, ICML 2019): consensus with compressed differences.

Each device keeps a public estimate x̂_i of its model and sends only the
top-k compressed difference q_i = top_k(x_i^{+1/2} - x̂_i)::

    x_i^{+1/2} = x_i - lr g_i(x_i)
    q_i = top_k(x_i^{+1/2} - x̂_i);  x̂_i <- x̂_i + q_i
    V[j, i] <- V[j, i] + q_i         only if mask[i, j] (j received i's q)
    x_j <- x_j^{+1/2} + gamma sum_{i != j} W_ij (V[j, i] - x̂_j)

V[j, i] is receiver j's copy of i's public estimate (per-link state, N x N x d).
The paper assumes every q arrives, so all copies equal x̂_i; on a lossy network
a lost q leaves V[j, i] = x̂_i minus the lost differences *for good* (later q_i
are differences against x̂_i, not against j's copy): copies desynchronise and
the error is never repaired. W is Metropolis-Hastings on the symmetric part of
this exchange's delivered mask (``mask & mask.T``); a copy is still updated by
a one-way delivery. Payload: ``encoded_bytes(k, d)``, constant (offline works).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, sparse
from learner.compress import keep_count, topk_indices
from learner.mixing import metropolis_hastings


@dataclass(frozen=True)
class ChocoState:
    estimate: torch.Tensor  # (N, d) x̂_i, each device's own public estimate
    copies: torch.Tensor    # (N, N, d) copies[j, i]: j's view of x̂_i


@dataclass(frozen=True)
class ChocoSGD:
    lr: float = 0.1
    gamma: float = 0.3
    keep_ratio: float = 0.1
    name: str = "choco_sgd"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("keep_ratio", self.keep_ratio, 0.0, 1.0)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return (Message((sparse("difference", dim, keep_count(dim, self.keep_ratio)),)),)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> ChocoState:
        n, d = x.shape
        return ChocoState(torch.zeros_like(x), torch.zeros(n, n, d, dtype=x.dtype))

    def step(self, x: torch.Tensor, state: ChocoState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, ChocoState]:
        dim = x.shape[1]
        k = keep_count(dim, self.keep_ratio)
        half = x - self.lr * grad_fn(x)
        difference = half - state.estimate
        chosen = topk_indices(difference, k).sort(dim=1).values  # in order: the copies update walks memory forward
        sent = difference.gather(1, chosen)  # q_i on its k coordinates (0 elsewhere)
        mask = links.exchange()
        estimate = state.estimate.scatter_add(1, chosen, sent)
        copies = _received(state.copies, mask, chosen, sent)
        weights = metropolis_hastings(mask, x.dtype)
        weights = weights - torch.diag(torch.diag(weights))  # off-diagonal: w_ij, i != j
        pull = _weighted_copies(weights, copies) - weights.sum(0)[:, None] * estimate
        return half + self.gamma * pull, ChocoState(estimate, copies)


def _received(copies: torch.Tensor, mask: torch.Tensor, chosen: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
    """V[j, i] + q_i for every delivered (mask[i, j]) pair, touching only q_i's k coordinates; V itself is kept."""
    n, _, d = copies.shape
    updated = copies.clone()  # the caller may keep the old state: one copy of V per step, no in-place change to it
    receiver, sender = mask.T.nonzero(as_tuple=True)
    # flat positions of (receiver, sender, chosen coordinate): a 1-d index_add_ is ~10x faster than V[j, i, c] += q
    positions = ((receiver * n + sender) * d)[:, None] + chosen[sender]
    updated.view(-1).index_add_(0, positions.view(-1), sent[sender].view(-1))
    return updated


def _weighted_copies(weights: torch.Tensor, copies: torch.Tensor) -> torch.Tensor:
    """sum_i w_ij V[j, i] (N, d), reading only the copies with a nonzero weight (a sparse (N, N*N) @ (N*N, d))."""
    n, _, d = copies.shape
    receiver, sender = weights.T.nonzero(as_tuple=True)  # row-major: grouped by receiver, as CSR needs
    picks = torch.sparse_coo_tensor(torch.stack([receiver, receiver * n + sender]), weights[sender, receiver],
                                    (n, n * n), is_coalesced=True, check_invariants=False)
    return torch.sparse.mm(picks, copies.view(n * n, d))
