"""The ``synthetic`` link model: a named option for fast unit tests, never a fallback for ns-3.

Same placement as the ns-3 scenario; a pair within radio range delivers each
exchange independently with probability ``delivery_probability``, at a
completion time uniform in (0, deadline). No packets are simulated.
"""

from __future__ import annotations

import numpy as np

from bridge.trace import LinkTrace
from ns3_scenarios.scenario import ScenarioConfig, exchange_senders, place_devices


def synthetic_trace(config: ScenarioConfig, seed: int, rounds: int, payload_bytes: tuple[int, ...],
                    delivery_probability: float = 0.8) -> LinkTrace:
    placement = place_devices(config, seed)
    n = config.nodes
    distance = np.linalg.norm(placement.positions_m[:, None] - placement.positions_m[None], axis=-1)
    in_range = (distance < config.range_m) & ~np.eye(n, dtype=bool)
    if config.access_point:
        in_range[:-1, :-1] = False
    rng = np.random.default_rng([seed, 0x5F7])
    shape = (rounds, len(payload_bytes), n, n)
    senders = np.array([exchange_senders(config, e, p) for e, p in enumerate(payload_bytes)], dtype=np.int64)
    intended = np.broadcast_to(in_range & (senders > 0)[:, :, None], shape)
    delivered = intended & (rng.random(shape) < delivery_probability)
    done_s = np.where(delivered, rng.uniform(0.0, config.deadline_s, shape), np.nan).astype(np.float32)
    return LinkTrace(
        done_s=done_s,
        rx_bytes=np.where(delivered, senders[None, :, :, None], 0).astype(np.int64),
        intended=intended.copy(),
        sender_bytes=np.broadcast_to(senders, (rounds, *senders.shape)).copy(),
        positions=np.broadcast_to(placement.positions_m.astype(np.float32), (rounds, n, 2)).copy(),
        idle_delivered=in_range,
        payload_bytes=tuple(payload_bytes),
        deadline_s=config.deadline_s,
        datagram_bytes=config.datagram_bytes,
        meta={"link_model": "synthetic", "idle_density": float(in_range.mean() * n / (n - 1)),
              "area_side_m": placement.side_m, "delivery_probability": delivery_probability},
    )
