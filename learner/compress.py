"""Sparsification kernels: pure functions on (N, d) tensors, one row per device.

Every selector returns a bool mask (N, d) of the coordinates a device sends;
``split`` turns an accumulated update and a mask into (sent, residual) with
``sent + residual == accumulated`` exactly, so nothing is silently dropped.

Encoded size of one sparse message (``encoded_bytes``), for k sent
coordinates of a d-dimensional float32 vector::

    size(k, d) = min(4 d,                                  # dense: the values only
                     HEADER + min(k (b + 4),               # COO: an index and a value per coordinate
                                  ceil(d / 8) + 4 k))      # bitmap of d bits + the values

with ``HEADER = 8`` bytes (format tag + count) and index width
``b = index_bytes(d)`` = 1, 2 or 4 bytes (the smallest unsigned integer that
holds d - 1). A dense message carries no header, so dense SGD sends exactly
the 4 d bytes of D-PSGD and replays the same ns-3 trace.

eSGD (Tao & Li, "eSGD: Communication Efficient Distributed Deep Learning on
the Edge", HotEdge 2018) selection, per device and round (``esgd_select``):

1. t < 2: k coordinates uniformly at random;
2. otherwise, if loss(x_t) < loss(x_{t-1}): keep last round's selection and
   raise its importance, H_S <- H_S + importance_step;
   else: draw k coordinates by weighted random sampling without replacement,
   P ∝ H (Efraimidis-Spirakis keys log(u) / H, top k);
3. residual replacement (``replace_lowest_importance``): the accumulated
   update a = beta r + g; every unselected coordinate with |a_j| > mean(|g|)
   (largest |a| first) replaces the selected coordinate with the lowest H,
   at most k replacements.

Randomness: ``uniforms`` is one (d,) vector of U(0, 1] per round drawn from the
caller's generator and shared by all devices (the same shared-seed convention
as random-k schemes: device i's draws do not depend on how many devices the
batch holds).
"""

from __future__ import annotations

import math

import torch

HEADER_BYTES = 8
VALUE_BYTES = 4


def keep_count(dim: int, ratio: float) -> int:
    """k = round(ratio * d), at least 1 and at most d."""
    return min(dim, max(1, int(round(ratio * dim))))


def index_bytes(dim: int) -> int:
    """Bytes of one coordinate index: the smallest of 1, 2, 4 that holds d - 1."""
    if dim <= 1 << 8:
        return 1
    if dim <= 1 << 16:
        return 2
    return 4


def encoded_bytes(count: int, dim: int) -> int:
    """Bytes on the air for ``count`` sent coordinates of a d-dimensional float32 vector (see module doc)."""
    if not 0 <= count <= dim:
        raise ValueError(f"count: {count} is outside [0, {dim}]")
    dense = VALUE_BYTES * dim
    coo = count * (index_bytes(dim) + VALUE_BYTES)
    bitmap = math.ceil(dim / 8) + VALUE_BYTES * count
    return min(dense, HEADER_BYTES + min(coo, bitmap))


def encoded_sizes(mask: torch.Tensor) -> list[int]:
    """``encoded_bytes`` of each row of a selection mask (N, d): one size per sender."""
    dim = mask.shape[1]
    return [encoded_bytes(int(c), dim) for c in mask.sum(1).tolist()]


def split(accumulated: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sent, residual): the masked part and the rest; sent + residual == accumulated exactly.

    Multiplying by the 0/1 mask is exact for finite values (a * 1 = a, a - a = 0, a - 0 = a) and
    several times faster than ``torch.where`` on a bool mask on CPU (`make bench`).
    """
    sent = accumulated * mask.to(accumulated.dtype)
    return sent, accumulated - sent


def _mask_of(indices: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.bool).scatter_(1, indices, True)


def topk_indices(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (N, k) of the k largest |values| of each row, in no particular order (ties broken by torch.topk)."""
    return values.abs().topk(k, dim=1, sorted=False).indices


def topk_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest |values| of each row, as a mask (see ``topk_indices``)."""
    return _mask_of(topk_indices(values, k), values.shape)


def threshold_mask(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """Coordinates with |value| > threshold (the count differs per row)."""
    return values.abs() > threshold


def random_mask(uniforms: torch.Tensor, rows: int, k: int) -> torch.Tensor:
    """k coordinates uniformly at random: the k largest of the shared uniforms (d,), for every row."""
    return _mask_of(uniforms.topk(k).indices.expand(rows, k).contiguous(), torch.Size((rows, uniforms.numel())))


def weighted_sample_mask(importance: torch.Tensor, uniforms: torch.Tensor, k: int) -> torch.Tensor:
    """k coordinates per row without replacement, P ∝ importance (> 0): top-k of log(u) / H (Efraimidis-Spirakis)."""
    keys = uniforms.clamp_min(torch.finfo(uniforms.dtype).tiny).log()[None, :] / importance
    return _mask_of(keys.topk(k, dim=1, sorted=False).indices, importance.shape)


def replace_lowest_importance(selected: torch.Tensor, importance: torch.Tensor, accumulated: torch.Tensor,
                              threshold: torch.Tensor) -> torch.Tensor:
    """eSGD's residual replacement; keeps exactly as many coordinates per row as ``selected`` has.

    Candidates: unselected coordinates with |accumulated| > threshold (per row, shape (N,)). The m largest
    candidates (m = min(#candidates, k)) replace the m selected coordinates with the lowest importance.
    All rows at once: the top m_max candidates and bottom m_max selected of every row, of which each row
    swaps its first m (ties between equal values are broken by torch.topk).
    """
    magnitude = accumulated.abs()
    candidates = ~selected & (magnitude > threshold[:, None])
    swaps = torch.minimum(candidates.sum(1), selected.sum(1))  # m per row
    width = int(swaps.max()) if swaps.numel() else 0
    if width == 0:
        return selected.clone()
    used = torch.arange(width)[None, :] < swaps[:, None]  # (N, width): the first m of each row
    incoming = torch.where(candidates, magnitude, -1.0).topk(width, dim=1).indices  # |a| >= 0 > -1
    outgoing = torch.where(selected, importance, torch.inf).topk(width, dim=1, largest=False).indices
    leaving = torch.zeros_like(selected).scatter_(1, outgoing, used)
    arriving = torch.zeros_like(selected).scatter_(1, incoming, used)
    return (selected & ~leaving) | arriving


def esgd_select(round_index: int, k: int, previous: torch.Tensor, importance: torch.Tensor, loss: torch.Tensor,
                previous_loss: torch.Tensor, uniforms: torch.Tensor,
                importance_step: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-2 of eSGD (before replacement): (selection (N, d), importance (N, d)).

    Rows whose loss fell keep ``previous`` and add ``importance_step`` to its H; the others resample ∝ H.
    """
    rows = importance.shape[0]
    if round_index < 2:
        return random_mask(uniforms, rows, k), importance
    improved = (loss < previous_loss)[:, None]
    resampled = weighted_sample_mask(importance, uniforms, k)
    selection = torch.where(improved, previous, resampled)
    bumped = importance + importance_step * (previous & improved).to(importance.dtype)
    return selection, bumped
