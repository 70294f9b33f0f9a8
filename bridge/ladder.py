"""The ablation ladder: link models derived from an ns-3 trace, each adding one effect of 802.11a.

From the idealised graph of the papers to the real network, one rung at a
time (each a named link model, cached and labelled like any other, never a
fallback):

1. ``ns3_ideal``: every pair of devices delivers every exchange (the complete
   graph the papers' analyses start from), on the ns-3 trace's clock;
2. ``ns3_random_graph``: each unordered pair up both ways, independently in
   every exchange, with probability equal to the density the ns-3 trace
   *measured* (delivered ordered pairs over N(N - 1), over its exchanges);
   no geometry;
3. ``ns3_geometry``: ns-3's quiet-channel neighbour graph (its idle probe),
   lossless: every neighbour delivers every exchange;
4. ``ns3_independent_loss``: ns-3's addressed pairs, each ordered pair
   delivering independently in every exchange with the rate it had in the
   ns-3 trace (delivered / addressed exchanges; asymmetry kept, correlation
   between pairs and over time removed);
5. ``ns3``: the ns-3 masks themselves (correlated losses: collisions, hidden
   terminals; time variation).

**One clock.** A derived rung changes who receives whom, not the exchanges'
timing: its frames and bytes on the air are the ns-3 trace's; a message it
delivers completes when ns-3 completed it in that exchange, or, where ns-3 did
not deliver it, at the median completion time of the messages ns-3 delivered in
that exchange (of the whole trace when none). A rung's seconds differ from
ns-3's only through which messages arrive (a round ends early when every
addressed message arrived), and its radios are charged over its own clock: ns-3's
radio timeline cut at the rung's exchange end (``LinkTrace.radio_window_s``,
between ns-3's recorded cuts). So rounds, simulated seconds and joules compare
like with like along the ladder. Draws come
from the run's seed, independent of the ns-3 trace's.
"""

from __future__ import annotations

import numpy as np

from bridge.link_models import names_of_kind
from bridge.stats import pair_delivery_rates
from bridge.trace import LinkTrace

LADDER_MODELS = names_of_kind("ladder")  # the rungs, in order (bridge/link_models.py)
_STREAMS = {"ns3_random_graph": 0x1ADD, "ns3_independent_loss": 0x1055}


def measured_density(trace: LinkTrace) -> float:
    """Delivered ordered pairs over N(N - 1), over every exchange of the trace."""
    n = trace.devices
    delivered = ~np.isnan(trace.done_s)
    return float(delivered.sum() / (delivered.shape[0] * delivered.shape[1] * n * (n - 1)))


def pair_rates(trace: LinkTrace) -> np.ndarray:
    """(N, N): per ordered pair, delivered exchanges over the exchanges in which it was addressed (0: never)."""
    every_exchange = [(r, e) for r in range(trace.rounds) for e in range(trace.exchanges)]
    return np.nan_to_num(pair_delivery_rates(trace, every_exchange), nan=0.0)


def ladder_trace(link_model: str, source: LinkTrace, seed: int) -> LinkTrace:
    """The rung ``link_model`` derived from the ns-3 trace ``source`` (same rounds, exchanges and clock)."""
    if link_model not in LADDER_MODELS:
        raise ValueError(f"link_model: {link_model!r} is not a ladder rung; allowed: {', '.join(LADDER_MODELS)}")
    shape, n = source.done_s.shape, source.devices
    off_diagonal = ~np.eye(n, dtype=bool)
    rng = np.random.default_rng([seed, _STREAMS.get(link_model, 0)])
    meta = {"link_model": link_model, "mode": "offline", "derived_from": "ns3",
            "source_measured_density": measured_density(source),
            **{k: v for k, v in source.meta.items() if k in ("area_side_m", "range_m", "idle_density", "rounds")}}
    if link_model == "ns3_ideal":
        intended = np.broadcast_to(off_diagonal, shape).copy()
        delivered = intended.copy()
    elif link_model == "ns3_random_graph":
        upper = np.triu(rng.random(shape) < meta["source_measured_density"], k=1)
        delivered = (upper | np.swapaxes(upper, -1, -2)) & off_diagonal
        intended = np.broadcast_to(off_diagonal, shape).copy()
    elif link_model == "ns3_geometry":
        intended = np.broadcast_to(source.idle_delivered & off_diagonal, shape).copy()
        delivered = intended.copy()
    else:
        intended = source.intended.copy()
        delivered = intended & (rng.random(shape) < pair_rates(source)[None, None])
    delivered &= source.sender_bytes[:, :, :, None] > 0  # a node that sent nothing delivers nothing
    return LinkTrace(
        done_s=np.where(delivered, _completion_times(source), np.nan).astype(np.float32),
        rx_bytes=np.where(delivered, source.sender_bytes[:, :, :, None], 0).astype(np.int64),
        intended=intended, positions=source.positions, idle_delivered=source.idle_delivered,
        idle_rate=source.idle_rate, payload_bytes=source.payload_bytes, deadline_s=source.deadline_s,
        datagram_bytes=source.datagram_bytes, sender_bytes=source.sender_bytes, meta=meta,
        **{name: getattr(source, name) for name in ("air_bytes", "frames", "retries", "events", "radio_s", "radio_deadline_s", "clock_end_s",
                                                  "source_deadline_j")},
    )


def _completion_times(source: LinkTrace) -> np.ndarray:
    """ns-3's completion time where it delivered, else the median of the exchange's delivered messages
    (the whole trace's where the exchange delivered none)."""
    done = source.done_s.astype(np.float64)
    overall = np.nanmedian(done) if np.isfinite(done).any() else source.deadline_s / 2
    flat = done.reshape(*done.shape[:2], -1)
    has_any = np.isfinite(flat).any(axis=-1)
    per_exchange = np.full(done.shape[:2], overall)
    per_exchange[has_any] = np.nanmedian(flat[has_any], axis=-1)
    return np.where(np.isfinite(done), done, per_exchange[:, :, None, None])
