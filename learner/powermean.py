"""Weighted power means in the mirror space ``phi_p(w) = sign(w) |w|^p`` (HyperPrism's aggregation).

For receiver j with exponent p_j (one per coordinate), weights ``W[i, j]`` over
the senders it heard (its own column of a mixing matrix, summing to 1)::

    u_j = sum_i W_ij sign(x_i) |x_i|^p_j          (map, then weighted mean)
    M_j = sign(u_j) |u_j|^(1/p_j)                 (inverse map)

phi_p is strictly increasing, so M_j is a quasi-arithmetic (Kolmogorov) mean:
it lies between the smallest and the largest x_i it averaged, equals x when all
inputs equal x, and is the plain weighted mean for p = 1.

Numerics: |x|^p under- and overflows float32 long before p = 9. Everything is
computed in float64 *and* scaled per receiver and coordinate by
s = max |x_i| over the senders with W_ij > 0, so every |x_i / s|^p lies in
[0, 1] and cannot overflow for any p; then M = s * M(x / s). Senders with
W_ij = 0 are masked out before any arithmetic, so an undelivered value (even
inf or NaN) has no influence. Receivers are processed in chunks so the
(receivers, senders, d) intermediate stays small.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 22  # float64 elements of one (receivers, senders, d) intermediate (32 MiB)


def power_mean(x: torch.Tensor, weights: torch.Tensor, p: torch.Tensor | float,
               with_dp: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Weighted power mean of the rows of ``x`` (N, d) for every receiver, in x's dtype.

    ``weights`` (N, N): ``weights[i, j]`` is the weight receiver j gives sender i.
    ``p``: exponents >= 1, a number or a tensor broadcastable to (N, d) (row j = receiver j).
    With ``with_dp`` also returns dM/dp (N, d): the derivative of each coordinate of
    the mean with respect to the exponent that coordinate uses (HyperPrism trains its
    hypernetwork through it).
    """
    n, d = x.shape
    values = x.detach().to(torch.float64)
    weights = weights.to(torch.float64)
    exponents = torch.as_tensor(p, dtype=torch.float64).expand(n, d)
    chunk = max(1, CHUNK_ELEMENTS // max(1, n * d))
    means, slopes = [], []
    for start in range(0, n, chunk):
        mean, slope = _power_mean_chunk(values, weights[:, start:start + chunk].T, exponents[start:start + chunk],
                                        with_dp)
        means.append(mean)
        slopes.append(slope)
    mean = torch.cat(means).to(x.dtype)
    if with_dp:
        return mean, torch.cat(slopes).to(x.dtype)
    return mean


def _power_mean_chunk(values: torch.Tensor, weights: torch.Tensor, p: torch.Tensor,
                      with_dp: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Receivers of one chunk: weights (J, N) [receiver, sender], p (J, d)."""
    active = (weights > 0)[:, :, None]  # (J, N, 1)
    magnitude = torch.where(active, values.abs()[None], 0.0)  # (J, N, d); masked senders are exactly 0
    scale = magnitude.amax(1)  # (J, d)
    safe_scale = torch.where(scale > 0, scale, 1.0)
    ratio = magnitude / safe_scale[:, None, :]  # in [0, 1]
    powered = ratio ** p[:, None, :]
    signed = torch.where(active, torch.sign(values)[None], 0.0) * powered
    w = torch.where(active, weights[:, :, None], 0.0)
    u = (w * signed).sum(1)  # (J, d), |u| <= 1
    inverse = 1.0 / p
    unit_mean = torch.sign(u) * u.abs() ** inverse
    mean = scale * unit_mean
    if not with_dp:
        return mean, None
    # d/dp of sign(u)|u|^(1/p): M * (u'/(u p) - ln|u| / p^2), u' = sum_i w_i sign(x_i) r_i^p ln r_i.
    log_ratio = torch.where(ratio > 0, torch.log(torch.where(ratio > 0, ratio, 1.0)), 0.0)
    du = (w * signed * log_ratio).sum(1)
    nonzero = u != 0
    safe_u = torch.where(nonzero, u, 1.0)
    slope = torch.where(nonzero, unit_mean * (du / (safe_u * p) - torch.log(safe_u.abs()) * inverse ** 2), 0.0)
    return mean, scale * slope
