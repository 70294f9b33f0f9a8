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
it weights: |x_i / s|^p = exp(p ln r_i), ln r_i = ln|x_i| - ln s <= 0, lies in
[0, 1] for every p, so nothing can overflow, and M = s * M(x / s). ln|x_i| is
taken once per sender, in float64, so that the difference keeps the accuracy
of a per-pair ln(|x_i| / s); the one exp per (receiver, heard sender,
coordinate) is the irreducible work. Its argument is kept above ln of the
smallest normal number (+1): exp is ~30x slower on results that are subnormal
or 0, and such a term, below e 2^-126 of the largest one (which is 1), could
not change u in float32 anyway. The rest runs in the input's precision
(float32 for models, float64 for float64 inputs). Each receiver reads only the
senders it weights, gathered and padded to the largest in-degree of its tile
(receivers sorted by in-degree, tiles of receivers and coordinates small
enough to stay in cache); an undelivered value (even inf or NaN) is never read.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

CHUNK_ELEMENTS = 1 << 16  # elements of one (receivers, senders, coordinates) tile: small enough to stay in cache
LOG_OF_ZERO = -1e4  # stands in for ln 0: finite, so a zero input's terms are 0 * finite = 0, never NaN


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
    receivers, senders, sender_weights, degrees = _heard_senders(weights.to(dtype).T)
    exponents = torch.as_tensor(p, dtype=dtype).expand(n, d)[receivers]
    log_magnitude, sign = _sender_terms(x.detach().to(dtype))
    log_scale = torch.empty(n, d, dtype=torch.float64)
    u, du = torch.empty(n, d, dtype=dtype), torch.empty(n, d, dtype=dtype)
    workspace = _Workspace(dtype)
    for rows, width, cols in _tiles(degrees, d):
        heard = senders[rows, :width].reshape(-1)
        shape = (heard.numel() // width, width, cols.stop - cols.start)
        log_ratio = workspace.log_ratio(log_magnitude[:, cols], heard, shape, log_scale[rows, cols])
        signed = workspace.signed_powers(log_ratio, exponents[rows, cols], sign[:, cols], heard)
        _weighted_sums(signed, log_ratio, sender_weights[rows, :width], u[rows, cols], du[rows, cols] if with_dp else None)
    # s_j = exp(ln s_j) rounds back to max_i |x_i| exactly for float32 inputs (ln s_j is float64)
    mean, slope = _inverse_map(u, du if with_dp else None, exponents, torch.exp(log_scale).to(dtype))
    mean = _unsort(mean, receivers).to(x.dtype)
    if with_dp:
        return mean, _unsort(slope, receivers).to(x.dtype)
    return mean


def _heard_senders(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Who each receiver heard, receivers by decreasing in-degree (so padding is per tile, not to the global max).

    ``weights`` is (receiver, sender). Returns the receivers' order (N,), their senders with positive weight
    first (N, N), those weights (0 after them), and the in-degrees. Entries past a receiver's in-degree point
    at row N of the per-sender terms, an extra zero sender, so an undelivered value (even inf or NaN) is never read.
    """
    n = weights.shape[0]
    heard = weights > 0
    degrees = heard.sum(1)
    receivers = torch.sort(degrees, descending=True, stable=True).indices
    heard = heard[receivers]
    senders = torch.sort(heard.to(torch.int8), dim=1, descending=True, stable=True).indices
    sender_weights = torch.where(heard.gather(1, senders), weights[receivers].gather(1, senders), 0.0)
    senders = torch.where(sender_weights > 0, senders, n)
    return receivers, senders, sender_weights, degrees[receivers].tolist()


def _tiles(degrees: list[int], d: int) -> Iterator[tuple[slice, int, slice]]:
    """Blocks (receivers, padded width, coordinates) of about CHUNK_ELEMENTS heard values.

    ``degrees`` is decreasing, so a block's first receiver sets its width."""
    start, n = 0, len(degrees)
    while start < n:
        width = max(1, degrees[start])
        stop = min(n, start + max(1, CHUNK_ELEMENTS // (width * d)))
        columns = max(1, CHUNK_ELEMENTS // ((stop - start) * width))
        for first in range(0, d, columns):
            yield slice(start, stop), width, slice(first, min(d, first + columns))
        start = stop


def _sender_terms(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ln|x_i| (float64; LOG_OF_ZERO for 0) and sign(x_i), once per sender (N + 1, d): row N is the zero sender.

    float64 so that ln r = ln|x_i| - ln s is as accurate as ln(|x_i| / s) would be."""
    values = torch.cat([values, values.new_zeros(1, values.shape[1])])
    return torch.log(values.abs().double()).clamp_(min=LOG_OF_ZERO), torch.sign(values)


class _Workspace:
    """Preallocated tile buffers: fresh ones per tile would cost page faults."""

    def __init__(self, dtype: torch.dtype):
        self.log_magnitude = torch.empty(CHUNK_ELEMENTS, dtype=torch.float64)
        self.ratio, self.powered, self.sign = (torch.empty(CHUNK_ELEMENTS, dtype=dtype) for _ in range(3))
        # exp is ~30x slower where its result is subnormal or 0: arguments stop where it is still normal
        self.floor = math.log(torch.finfo(dtype).tiny) + 1

    def log_ratio(self, log_magnitude: torch.Tensor, heard: torch.Tensor, shape: tuple[int, int, int],
                  log_scale: torch.Tensor) -> torch.Tensor:
        """ln r_i = ln|x_i| - ln s <= 0 (J, K, c), s = max_i |x_i| over what each receiver heard; writes ln s."""
        gathered = _gather(log_magnitude, heard, self.log_magnitude, shape)
        torch.amax(gathered, 1, out=log_scale)
        return torch.sub(gathered, log_scale[:, None, :], out=_view(self.ratio, shape))

    def signed_powers(self, log_ratio: torch.Tensor, p: torch.Tensor, sign: torch.Tensor,
                      heard: torch.Tensor) -> torch.Tensor:
        """sign(x_i) r_i^p (J, K, c): the one exp per heard value. A term whose r^p is below e 2^-126 (float32)
        counts as that: it is 2^-100 below u's rounding, as the largest term is 1."""
        powered = torch.mul(log_ratio, p[:, None, :], out=_view(self.powered, log_ratio.shape))
        powered.clamp_(min=self.floor).exp_()
        return powered.mul_(_gather(sign, heard, self.sign, log_ratio.shape))


def _gather(rows: torch.Tensor, index: torch.Tensor, buffer: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """rows[index] (J * K, c) into ``buffer``, viewed as (J, K, c)."""
    return torch.index_select(rows, 0, index, out=_view(buffer, (shape[0] * shape[1], shape[2]))).view(shape)


def _view(buffer: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return buffer[:math.prod(shape)].view(shape)


def _weighted_sums(signed: torch.Tensor, log_ratio: torch.Tensor, weights: torch.Tensor, u: torch.Tensor,
                   du: torch.Tensor | None) -> None:
    """u = sum_i w_i sign(x_i) r_i^p and du/dp = sum_i w_i sign(x_i) r_i^p ln r_i, into ``u`` and ``du`` (J, c)."""
    weights = weights[:, None, :]
    u.copy_(torch.bmm(weights, signed).squeeze(1))
    if du is not None:
        du.copy_(torch.bmm(weights, signed.mul_(log_ratio)).squeeze(1))  # ln r is finite: a 0 term stays 0


def _inverse_map(u: torch.Tensor, du: torch.Tensor | None, p: torch.Tensor,
                 scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """M = s sign(u)|u|^(1/p) and, with du, dM/dp = M (du / (u p) - ln|u| / p^2) (0 where u = 0)."""
    inverse = 1.0 / p
    log_u = torch.log(u.abs())
    mean = scale * torch.sign(u) * torch.exp(log_u * inverse)
    if du is None:
        return mean, None
    nonzero = u != 0
    safe_u = torch.where(nonzero, u, 1.0)
    slope = torch.where(nonzero, mean * (du / (safe_u * p) - log_u * inverse * inverse), 0.0)
    return mean, slope


def _unsort(rows: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Rows computed in ``order`` back in their own order."""
    result = torch.empty_like(rows)
    result[order] = rows
    return result
