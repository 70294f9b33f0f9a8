"""The gossip matrices HyperPrism's comparison gives ADOM and Mudag: the graph Laplacian of the current links.

HyperPrism configures both baselines with W(t) = L(t) / lambda_max(L(t)), L(t) = D - A the Laplacian of
the links that delivered both ways in that exchange (``mask & mask.T``, as every symmetric method here).
Scaled this way its eigenvalues lie in [0, 1] with the largest exactly 1; its kernel is the vectors
constant on each connected component. ADOM+ uses it as its gossip matrix; Mudag mixes with
I - L / lambda_max (symmetric, doubly stochastic, eigenvalues in [0, 1]). A round with no two-way link
gives the zero Laplacian (no mixing).
"""

from __future__ import annotations

import torch

from learner.mixing import symmetric_links


def normalized_laplacian(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """L / lambda_max(L) of the two-way links of ``mask``."""
    links = symmetric_links(mask).to(torch.float64)
    laplacian = torch.diag(links.sum(1)) - links
    largest = float(torch.linalg.eigvalsh(laplacian)[-1]) if links.any() else 0.0
    return (laplacian / largest if largest > 0 else laplacian).to(dtype)


def laplacian_mixing(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """I - L / lambda_max: the mixing matrix of one gossip step with the normalised Laplacian."""
    return torch.eye(mask.shape[0], dtype=dtype) - normalized_laplacian(mask, dtype)
