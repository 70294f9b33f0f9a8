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


def push_sum_weights(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Push-sum shares on the directed mask as it is: P[i, j] = 1 / (1 + |out(i)|) for j in out(i) and j = i.

    out(i) = {j != i : mask[i, j]} are the devices that actually received i's
    message. Every row sums to 1: each sender splits all of its mass between
    itself and its receivers, so mass sent over a link that did not deliver is
    never lost; it stays with the sender (the sender is assumed to learn who
    received). Applied like every mixing matrix: ``x_new = P.T @ x``.
    """
    kept_or_sent = mask | torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)
    return kept_or_sent.to(dtype) / kept_or_sent.sum(1, keepdim=True).to(dtype)


def connected_components(links: torch.Tensor) -> torch.Tensor:
    """Component label of every device in the graph ``links`` (N, N) bool, taken undirected: the smallest index in it."""
    n = links.shape[0]
    reach = links | links.T | torch.eye(n, dtype=torch.bool, device=links.device)
    labels = torch.arange(n, device=links.device)
    while True:  # each pass lets every device adopt the smallest label among its neighbours
        spread = torch.where(reach, labels[None, :], n).min(1).values
        if torch.equal(spread, labels):
            return labels
        labels = spread


def spectral_lambda(weights: torch.Tensor) -> float:
    """lambda of a symmetric mixing matrix W: how slowly gossip with W averages.

    The largest |eigenvalue| of W off the consensus vectors of the connected
    components of its support (the constant vector on each component, which W
    keeps). For a connected graph this is the usual second-largest |eigenvalue|;
    for a disconnected one it measures averaging *within* components, the only
    averaging gossip can do there (using 1 instead would make accelerated
    gossip stop contracting at all). Computed in float64.
    """
    w = weights.detach().to(torch.float64)
    n = w.shape[0]
    labels = connected_components((w != 0) & ~torch.eye(n, dtype=torch.bool, device=w.device))
    same = labels[:, None] == labels[None, :]
    projector = same.to(torch.float64) / same.sum(1, keepdim=True).to(torch.float64)
    return min(1.0, float(torch.linalg.eigvalsh(w - projector).abs().max()))


def gossip_momentum(lam: float) -> float:
    """Momentum of accelerated gossip for a given lambda: eta = (1 - sqrt(1 - lambda^2)) / (1 + sqrt(1 - lambda^2))."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda: {lam!r} is outside [0, 1]")
    root = (1.0 - lam * lam) ** 0.5
    return (1.0 - root) / (1.0 + root)


def accelerated_gossip(z: torch.Tensor, weights: list[torch.Tensor], momentum: float | list[float]) -> torch.Tensor:
    """AG_R: one step per mixing matrix, z_{r+1} = (1 + eta) W_r^T z_r - eta z_{r-1}, with z_{-1} = z_0 = z.

    ``momentum`` is one eta for every step, or one per step.

    With a fixed W and eta = gossip_momentum(lambda(W)) the distance to the
    average shrinks like sqrt(eta)^R instead of lambda^R (Chebyshev-style
    acceleration, Liu & Morse 2011). Every step keeps the column mean of z
    when each W_r is doubly stochastic.
    """
    momenta = momentum if isinstance(momentum, list) else [momentum] * len(weights)
    previous, current = z, z
    for w, eta in zip(weights, momenta, strict=True):
        # One fused addmm, (1 + eta) W^T z_r - eta z_{r-1}: no temporaries for the scaling and the difference.
        previous, current = current, torch.addmm(previous, w.T, current, beta=-eta, alpha=1.0 + eta)
    return current


def receiver_mean(mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Row j: the mean of values[i] over {j} and {i : mask[i, j]} (what device j holds after an exchange)."""
    held = (mask | torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)).to(values.dtype)
    return (held / held.sum(0)).T @ values  # normalise the (N, N) weights, not the (N, d) result


def fastmix(z: torch.Tensor, masks: list[torch.Tensor], accelerated: bool = True) -> torch.Tensor:
    """Accelerated (Chebyshev) gossip, one step per delivered mask (Ye et al., Mudag's FastMix)::

        z_{-1} = z_0 = z;  z_{k+1} = (1 + eta_k) W_k^T z_k - eta_k z_{k-1}

    W_k is the Metropolis-Hastings matrix of mask k (two-way links only, so it is
    symmetric and doubly stochastic and every step keeps the network average) and
    eta_k = gossip_momentum(spectral_lambda(W_k)): with a time-varying network each
    step is tuned to the matrix it actually uses (DeTAG's AG_R instead keeps the
    first step's eta). ``accelerated=False`` sets eta_k = 0: K plain gossip steps.
    """
    weights = [metropolis_hastings(mask, z.dtype) for mask in masks]
    momenta = [gossip_momentum(spectral_lambda(w)) if accelerated else 0.0 for w in weights]
    return accelerated_gossip(z, weights, momenta)


def gossip_laplacian(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(I - W) / 2 for the Metropolis-Hastings W of ``mask``: symmetric, positive semi-definite,
    eigenvalues in [0, 1), kernel = vectors constant on each connected component."""
    weights = metropolis_hastings(mask, dtype)
    return (torch.eye(mask.shape[0], dtype=dtype, device=mask.device) - weights) / 2


def random_matching(links: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random maximal matching of a symmetric link mask: partner[i] = j for matched pairs, -1 if unmatched.

    Edges are visited in a uniformly random order and taken when both ends are
    still free. The draw depends only on the mask and the generator, never on
    the devices' parameters.
    """
    n = links.shape[0]
    edges = torch.nonzero(torch.triu(links, diagonal=1))
    order = torch.randperm(edges.shape[0], generator=generator)
    partner = [-1] * n
    for i, j in edges[order].tolist():
        if partner[i] < 0 and partner[j] < 0:
            partner[i], partner[j] = j, i
    return torch.tensor(partner, dtype=torch.long)
