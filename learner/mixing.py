"""Mixing matrices built from a delivered mask, and nothing else.

Convention everywhere: ``mask[i, j]`` is True when device j received device
i's message in this exchange (delivery is directed). A mixing matrix W is
applied as ``x_new[j] = sum_i W[i, j] x[i]``, i.e. ``x_new = W.T @ x``.
"""

from __future__ import annotations

import torch


def symmetric_links(mask: torch.Tensor) -> torch.Tensor:
    """Pairs that delivered both ways, without self-loops: S = M and M^T."""
    both = mask & mask.T
    return both & ~torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)


def metropolis_hastings(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Metropolis-Hastings weights on the symmetric part of ``mask``.

    w_ij = 1 / (1 + max(d_i, d_j)) for every pair that delivered both ways,
    w_ii = 1 - sum_j w_ij. Symmetric and doubly stochastic; a device with no
    two-way link keeps its own model (w_ii = 1). Using only two-way links is
    what makes the matrix doubly stochastic on a directed, lossy network.
    """
    links = symmetric_links(mask)
    degree = links.sum(1).to(dtype)
    weights = torch.where(links, 1.0 / (1.0 + torch.maximum(degree[:, None], degree[None, :])), 0.0)
    return weights + torch.diag(1.0 - weights.sum(1))


def receiver_mean(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Row j: the mean of values[i] over {j} and {i : mask[i, j]} (what device j holds after an exchange)."""
    held = mask | torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)
    weights = held.to(values.dtype)
    return (weights.T @ values) / weights.sum(0)[:, None]
