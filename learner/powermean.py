"""Weighted power means in the mirror space ``phi_p(w) = sign(w) |w|^p`` (HyperPrism's aggregation).

For receiver j with exponent p_j (one per coordinate), weights ``W[i, j]`` over
the senders it heard (its own column of a mixing matrix, summing to 1)::

    u_j = sum_i W_ij sign(x_i) |x_i|^p_j          (map, then weighted mean)
    M_j = sign(u_j) |u_j|^(1/p_j)                 (inverse map)

phi_p is strictly increasing, so M_j is a quasi-arithmetic (Kolmogorov) mean:
it lies between the smallest and the largest x_i it averaged, equals x when all
inputs equal x, and is the plain weighted mean for p = 1.

Numerics: |x|^p under- and overflows float32 long before p = 9 (|x|^9 > 3e38
for |x| > 2e4, and 0 for |x| < 1e-5). The maps are computed in the log domain
on values scaled per receiver and coordinate by s = max |x_i| over the senders
it weights: |x_i / s|^p = exp(p ln|x_i / s|) lies in [0, 1] for every p, so
nothing can overflow, and M = s * M(x / s). A term that underflows is below
2^-126 of the largest one and could not change u in float32 anyway, so the
computation runs in the input's precision (float32 for models, float64 for
float64 inputs). Each receiver reads only the senders it weights, gathered and
padded to the largest in-degree, in chunks of receivers so the (receivers,
senders, d) intermediate stays small; an undelivered value (even inf or NaN)
is never read.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 18  # elements of one (receivers, senders, d) intermediate: small enough to stay in cache


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
    dtype = torch.promote_types(x.dtype, torch.float32)
    weights = weights.to(dtype).T  # (receiver, sender)
    exponents = torch.as_tensor(p, dtype=dtype).expand(n, d)
    # Each receiver reads only the senders it gives weight to, gathered and padded to the largest in-degree;
    # padding points at an extra all-zero row, so an undelivered value (even inf or NaN) is never read.
    values = torch.cat([x.detach().to(dtype), torch.zeros(1, d, dtype=dtype)])
    width = max(1, int((weights > 0).sum(1).max()))
    senders = torch.topk((weights > 0).to(torch.float32), width, dim=1, sorted=False).indices  # (N, width)
    sender_weights = weights.gather(1, senders).clamp(min=0.0)
    senders = torch.where(sender_weights > 0, senders, n)
    chunk = max(1, CHUNK_ELEMENTS // max(1, width * d))
    means, slopes = [], []
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        mean, slope = _power_mean_chunk(values[senders[rows]], sender_weights[rows], exponents[rows], with_dp)
        means.append(mean)
        slopes.append(slope)
    mean = torch.cat(means).to(x.dtype)
    if with_dp:
        return mean, torch.cat(slopes).to(x.dtype)
    return mean


def _power_mean_chunk(values: torch.Tensor, weights: torch.Tensor, p: torch.Tensor,
                      with_dp: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Receivers of one chunk: the values they read (J, K, d; 0 for padding), their weights (J, K), exponents (J, d)."""
    magnitude = values.abs()
    scale = magnitude.amax(1)  # (J, d)
    safe_scale = torch.where(scale > 0, scale, 1.0)
    log_ratio = torch.log(magnitude / safe_scale[:, None, :])  # <= 0; -inf for a zero
    powered = torch.exp(log_ratio * p[:, None, :])  # |x_i / s|^p in [0, 1]
    signed = torch.sign(values) * powered * weights[:, :, None]
    u = signed.sum(1)  # (J, d), |u| <= 1
    inverse = 1.0 / p
    unit_mean = torch.sign(u) * u.abs() ** inverse
    mean = scale * unit_mean
    if not with_dp:
        return mean, None
    # d/dp of sign(u)|u|^(1/p): M * (u'/(u p) - ln|u| / p^2), u' = sum_i w_i sign(x_i) r_i^p ln r_i.
    du = (signed * torch.where(powered > 0, log_ratio, 0.0)).sum(1)
    nonzero = u != 0
    safe_u = torch.where(nonzero, u, 1.0)
    slope = torch.where(nonzero, unit_mean * (du / (safe_u * p) - torch.log(safe_u.abs()) * inverse ** 2), 0.0)
    return mean, scale * slope
