"""Robust aggregation over what each device received: the rules the robust algorithms (``learner/algorithms/
trimmed_mean.py``, ``median.py``, ``krum.py``, ``bridge.py``, ``clipped_gossip.py``) apply, batched over devices.

Over 802.11a the number of messages a device receives varies per device and round, so each rule states what it
does when fewer arrive than it needs; ``tests/test_robust.py`` holds each to a plain per-device loop (1e-6)
and to hand-computed cases. Convention: ``mask[i, j]`` j received i's message; ``sent`` (N, d) what each
device's message carried (a Byzantine row is forged); a receiver's own value is its own model, never what it
sent.
"""

from __future__ import annotations

import torch


def candidates(own: torch.Tensor, sent: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per receiver j: its own value first, then every message it received: values (N, M, d) padded with 0,
    valid (N, M) bool; M = 1 + the most messages any device received."""
    n = own.shape[0]
    received = mask[:n, :n] & ~torch.eye(n, dtype=torch.bool)  # (i, j)
    counts = received.sum(0)
    width = 1 + int(counts.max()) if n else 1
    values = torch.zeros(n, width, own.shape[1], dtype=own.dtype)
    valid = torch.zeros(n, width, dtype=torch.bool)
    values[:, 0], valid[:, 0] = own, True
    receivers, senders = torch.nonzero(received.T, as_tuple=True)  # receiver-major, senders ascending
    starts = torch.cumsum(counts, 0) - counts
    slot = 1 + torch.arange(len(receivers)) - starts[receivers]
    values[receivers, slot] = sent[senders]
    valid[receivers, slot] = True
    return values, valid


def sorted_valid(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise ascending sort of each receiver's valid values (invalid ones last)."""
    return torch.where(valid[:, :, None], values, torch.inf).sort(dim=1).values


def trimmed_mean(values: torch.Tensor, valid: torch.Tensor, trim: int) -> torch.Tensor:
    """Coordinate-wise trimmed mean (Yin, Chen, Ramchandran & Bartlett, ICML 2018) of each receiver's m valid
    values, dropping the b = ``trim`` largest and b smallest; **fewer than 2b + 1 values**: it trims
    floor((m - 1) / 2) per side instead (the median's number when nothing else is left)."""
    m = valid.sum(1)
    b = torch.minimum(torch.full_like(m, trim), (m - 1) // 2)
    ordered = sorted_valid(values, valid)
    position = torch.arange(values.shape[1])[None, :]
    keep = (position >= b[:, None]) & (position < (m - b)[:, None])
    kept = torch.where(keep[:, :, None], ordered, 0.0).sum(1)
    return kept / (m - 2 * b)[:, None].to(values.dtype)


def coordinate_median(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median (Yin et al., ICML 2018) of each receiver's m valid values: the middle one, or the
    mean of the two middle ones when m is even (with its own value alone, its own value)."""
    m = valid.sum(1)
    ordered = sorted_valid(values, valid)
    low, high = (m - 1) // 2, m // 2
    pick = lambda index: ordered.gather(1, index[:, None, None].expand(-1, 1, values.shape[2])).squeeze(1)
    return (pick(low) + pick(high)) / 2


def krum(values: torch.Tensor, valid: torch.Tensor, byzantine: int, select: int) -> torch.Tensor:
    """(Multi-)Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, NeurIPS 2017) per receiver, over its m valid
    values (its own and those received): each value's score is the sum of squared distances to its m - f - 2
    nearest others (f = ``byzantine``); the mean of the ``select`` lowest-scored values (1: Krum). **Krum needs
    m > 2f + 2**: with fewer values the receiver keeps its own. Ties go to the lower position (own first)."""
    out = values[:, 0].clone()
    for j in range(values.shape[0]):
        rows = values[j, valid[j]]
        m = len(rows)
        if m <= 2 * byzantine + 2:
            continue
        distances = torch.cdist(rows.double(), rows.double()).pow(2)
        nearest = distances.sort(dim=1).values[:, 1:m - byzantine - 1]  # the m - f - 2 nearest others
        scores = nearest.sum(1)
        chosen = torch.sort(scores, stable=True).indices[:min(select, m)]
        out[j] = rows[chosen].mean(0)
    return out


def bridge_screen(values: torch.Tensor, valid: torch.Tensor, trim: int) -> torch.Tensor:
    """BRIDGE-T's screening (Yang & Bajwa, "BRIDGE: Byzantine-resilient decentralized gradient descent", 2019;
    IEEE TSIPN 2022): per coordinate, a receiver drops the b = ``trim`` largest received values among those
    above its own and the b smallest among those below it (every one of a side holding fewer than b), then
    averages its own value with what remains. **With fewer messages** nothing else changes: the rule never
    needs 2b + 1 values, it drops at most what lies on each side."""
    own = values[:, :1]
    received = valid.clone()
    received[:, 0] = False
    received = received[:, :, None].expand_as(values)
    above, below = received & (values > own), received & (values < own)

    def rank(side: torch.Tensor, descending: bool) -> torch.Tensor:
        """Each entry's rank on its side, farthest from the own value first (entries off the side rank last)."""
        filled = torch.where(side, values, -torch.inf if descending else torch.inf)
        order = filled.argsort(dim=1, descending=descending, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(values.shape[1])[None, :, None].expand_as(order))
        return ranks

    dropped = (above & (rank(above, True) < trim)) | (below & (rank(below, False) < trim))
    kept = valid[:, :, None] & ~dropped
    return torch.where(kept, values, 0.0).sum(1) / kept.sum(1).to(values.dtype)


def clipped_gossip(own: torch.Tensor, sent: torch.Tensor, weights: torch.Tensor, byzantine: int,
                   radius: float) -> torch.Tensor:
    """ClippedGossip (He, Karimireddy & Jaggi, "Byzantine-robust decentralized learning via ClippedGossip",
    2022): x_j <- x_j + sum_i W_ij clip(x_i - x_j, tau_j), clip(z, tau) = z min(1, tau / ||z||). ``weights``
    (N, N) the round's mixing matrix W[i, j] (its off-diagonal part is used). tau_j = ``radius`` when > 0;
    otherwise adaptive: the (b + 1)-th largest distance ||x_i - x_j|| among j's neighbours this round
    (b = ``byzantine``), so the b farthest are clipped to it (our reading of the paper's rule, which clips the
    farthest neighbours holding its estimated Byzantine weight). **Fewer than b + 1 neighbours**: tau_j = 0,
    the device keeps its own model."""
    n = own.shape[0]
    off = weights[:n, :n] * (1 - torch.eye(n, dtype=weights.dtype))
    neighbour = off > 0
    difference = sent[:, None, :] - own[None, :, :]  # (i, j, d): x_i - x_j
    distance = difference.norm(dim=2)
    if radius > 0:
        tau = torch.full((n,), radius, dtype=own.dtype)
    else:
        ranked = torch.where(neighbour, distance, -torch.inf).sort(dim=0, descending=True).values  # per column j
        enough = neighbour.sum(0) > byzantine
        tau = torch.where(enough, ranked[min(byzantine, n - 1)].clamp(min=0), 0.0)
    scale = torch.where(distance > 0, (tau[None, :] / distance.clamp(min=1e-30)).clamp(max=1.0), 1.0)
    return own + (off.to(own.dtype)[:, :, None] * scale[:, :, None] * difference).sum(0)
