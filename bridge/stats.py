"""Per-exchange link statistics measured from a LinkTrace: the rows of a run's ``links.csv``.

Definitions (N devices, one row per exchange used):
- ``intended_pairs``: ordered pairs (i, j) where i addressed j: i's idle-probe
  neighbours (broadcast, unicast, tcp) or the k drawn from them (fan-out).
- ``in_range_pairs``: pairs that delivered in the idle probe (the neighbours).
- ``delivered_pairs``: pairs whose whole message arrived by the deadline;
  ``measured_density`` = delivered_pairs / N(N-1), comparable with ``network.density``
  (with an access point: delivered_pairs / N, the fraction of devices whose upload, or
  download, arrived: comparable with the coverage).
- ``mean_completion_s``, ``p95_completion_s``: over the delivered pairs.
- ``bytes_received``: application bytes received by the end of the exchange window.
- ``bytes_on_air``: PSDU bytes of every frame any PHY transmitted in the window
  (data, MAC ACKs, retries, TCP ACKs); ``frames_on_air`` counts those frames.
- ``mac_retries``: MAC retransmissions, unicast data frames sent again after a missing ACK (ns-3's
  ``MacTxDataFailed`` less its final failures; 0 on the controls, which model none); under a message-core
  schedule, those each device made between its barriers, as its radio seconds.
- ``packets_lost``: datagrams of intended messages that had not arrived by the
  end of the window (deadline + drain), whether they collided, were dropped
  from a queue or were never sent in time: the sum over intended pairs of
  ceil(max(0, sent_i - received_ij) / datagram_bytes). For UDP that is exactly
  datagrams sent minus received; for TCP it counts datagram-sized units of the
  stream not delivered.
- ``link_model``: ns3, or the control (ideal, random_graph, fixed_graph) or
  synthetic model that made the trace.
- ``spectral_gap``: 1 - lambda of the fixed graph's Metropolis-Hastings
  matrix (``fixed_graph`` only; empty otherwise).
- ``radio_tx_s``, ``radio_rx_s``, ``radio_idle_s``, ``radio_sleep_s``: seconds all
  radios spent in each state over what the clock counts of the exchange (rounds:
  its window; a barrier schedule: each device's time since its previous barrier),
  whether or not the device's battery allowed it (ns-3's PHY states; the controls'
  airtime estimate). Joules are the ledger's, in the run's ``metrics.csv``.
"""

from __future__ import annotations

import numpy as np

from bridge.trace import LinkTrace
from messages.ledger import RADIO_STATES


def link_stats(trace: LinkTrace, round_index: int, exchanges: int, devices: int | None = None) -> list[dict]:
    """One row per exchange used in round ``round_index``; ``devices`` below the trace's nodes means the
    remaining node is an access point (its links are the only ones)."""
    n = trace.devices
    pairs = devices if devices is not None and devices < n else n * (n - 1)
    off_diagonal = ~np.eye(n, dtype=bool)
    rows = []
    for e in range(exchanges):
        done = trace.done_s[round_index, e]
        delivered = ~np.isnan(done) & off_diagonal
        intended = trace.intended[round_index, e]
        sent = trace.sender_bytes[round_index, e]
        missing = np.maximum(sent[:, None] - trace.rx_bytes[round_index, e], 0)
        times = done[delivered]
        rows.append({
            "round": round_index + 1,
            "exchange": e,
            "payload_bytes": int(round(float(sent.mean()))),
            "intended_pairs": int(intended.sum()),
            "in_range_pairs": int((trace.idle_delivered & off_diagonal).sum()),
            "delivered_pairs": int(delivered.sum()),
            "measured_density": delivered.sum() / pairs,
            "mean_completion_s": float(times.mean()) if times.size else float("nan"),
            "p95_completion_s": float(np.percentile(times, 95)) if times.size else float("nan"),
            "bytes_received": int(trace.rx_bytes[round_index, e].sum()),
            "bytes_on_air": int(trace.air_bytes[round_index, e]),
            "frames_on_air": int(trace.frames[round_index, e]),
            "mac_retries": int(trace.retries[round_index, e]),
            "packets_lost": int(np.ceil(missing[intended] / trace.datagram_bytes).sum()),
            "link_model": trace.meta.get("link_model", ""),
            "spectral_gap": float(trace.meta.get("spectral_gap", float("nan"))),
            **{f"radio_{state}_s": float(seconds) for state, seconds in zip(RADIO_STATES, radio_s(trace, round_index, e))},
        })
    return rows


def radio_s(trace: LinkTrace, round_index: int, exchange: int) -> np.ndarray:
    """(4,) the radios' seconds per state over what the clock counts of one exchange, summed over nodes."""
    if trace.local_barrier:
        return trace.radio_s[round_index, exchange].sum(axis=0)
    return trace.radio_window_s(round_index, exchange, trace.exchange_end_s(round_index, exchange)).sum(axis=0)


def pair_delivery_rates(trace: LinkTrace, slots: list[tuple[int, int]]) -> np.ndarray:
    """(N, N) fraction of the exchanges ``slots`` ((round index, exchange), those a run used) in which i's
    message reached j, over those in which i addressed j; NaN for a pair never addressed."""
    n = trace.devices
    delivered, intended = np.zeros((n, n)), np.zeros((n, n))
    for round_index, exchange in slots:
        addressed = trace.intended[round_index, exchange]
        intended += addressed
        delivered += trace.delivered(round_index, exchange) & addressed
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(intended > 0, delivered / intended, np.nan)
