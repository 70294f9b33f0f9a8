"""Control link models: the papers' own network abstractions, as LinkTraces beside ns-3's.

Each is a named scientific baseline, never a fallback: a config asks for it by
``network.link_model`` and every CSV, table and plot carries that name. They
use the same placement, rounds and exchanges as the ns-3 scenario, are
cached and replayed like ns-3 traces (the cache key includes the model), and
never start ns-3. All three are lossless; what they model and leave out:

- ``ideal``: every pair within radio range of the scenario's geometry (the
  disc the idle probe measures on a quiet channel, without fading) delivers
  every exchange in full. Leaves out collisions, hidden terminals, fading and
  queueing.
- ``random_graph``: the time-varying graph HyperPrism and DeTAG assume: in
  every exchange each unordered pair is up, both ways, independently with
  probability ``network.density``. No geometry.
- ``fixed_graph``: the same links in every exchange, from ``network.topology``
  (ring, torus, circulant with ``topology_degree`` neighbours per side, star,
  complete); its spectral gap 1 - lambda of the Metropolis-Hastings matrix is
  reported in ``meta`` (and so in ``run.json``) and per exchange in
  ``links.csv``.

Time, under every schedule (the same rule as ``bridge.messages.DelayMessages``): each device sends at the
offset every schedule uses (``messages.schedules.send_offsets``: U(0, ``start_jitter_s``) after its compute
ends, here after the exchange's start), and its message takes the airtime of ``ns3_scenarios.airtime`` as if
alone on the channel (``airtime.message_s``: the controls leave out contention and collisions); it completes
for all its receivers then; anything past ``deadline_s`` does not count. Bytes and frames on the air come from
the same model (an estimate).

Radio seconds (an estimate from the same airtime model, for the ledger, ``messages.ledger``): in each exchange
a sender's radio is in TX for the PPDUs of its message (one copy per target for unicast), a receiver in RX for
the PPDUs of every message whose link is up (and, for unicast, each side spends an ACK's PPDU per frame in the
other state); the rest is idle, or, with ``radio_sleep``, asleep from when the device's own message and every
message it hears are complete. They are cut where ns-3's are: at the exchange's clock end
(``exchange_window_s``: its last message when all arrived by the deadline, else the deadline) and at the
deadline.
"""

from __future__ import annotations

import math

import numpy as np

from bridge.link_models import names_of_kind
from bridge.trace import LinkTrace
from messages.ledger import RADIO_STATES, busy_within
from messages.schedules import send_offsets
from ns3_scenarios.airtime import UDP_FRAME_OVERHEAD_BYTES, message_radio_s, message_s
from ns3_scenarios.scenario import ScenarioConfig, exchange_senders, place_devices

CONTROL_MODELS = names_of_kind("control")  # ideal, random_graph, fixed_graph (bridge/link_models.py)


def graph_adjacency(topology: str, n: int, degree: int = 2) -> np.ndarray:
    """Symmetric bool (n, n) adjacency of a named fixed topology, no self-loops.

    ring: i ~ i +- 1; circulant: i ~ i +- 1..degree (degree = 1 is the ring; (n - 1) // 2 the complete graph
    for odd n); torus: an r x c grid with wrap-around, r the largest divisor of n not above sqrt(n)
    (a prime n gives a ring); star: device 0 ~ every other; complete: every pair."""
    adjacency = np.zeros((n, n), dtype=bool)
    index = np.arange(n)
    if topology in ("ring", "circulant"):
        for step in range(1, (degree if topology == "circulant" else 1) + 1):
            adjacency[index, (index + step) % n] = True
    elif topology == "torus":
        rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
        cols = n // rows
        r, c = np.divmod(index, cols)
        adjacency[index, r * cols + (c + 1) % cols] = True
        adjacency[index, ((r + 1) % rows) * cols + c] = True
    elif topology == "star":
        adjacency[0, 1:] = True
    elif topology == "complete":
        adjacency[:] = True
    else:
        raise ValueError(f"topology: unknown fixed graph {topology!r}")
    adjacency |= adjacency.T
    np.fill_diagonal(adjacency, False)
    return adjacency


def metropolis_hastings_matrix(symmetric: np.ndarray) -> np.ndarray:
    """w_ij = 1 / (1 + max(d_i, d_j)) on the links, w_ii = 1 - sum_j w_ij (float64)."""
    degree = symmetric.sum(axis=1)
    weights = np.where(symmetric, 1.0 / (1.0 + np.maximum(degree[:, None], degree[None, :])), 0.0)
    np.fill_diagonal(weights, 1.0 - weights.sum(axis=1))
    return weights


def spectral_gap(symmetric: np.ndarray) -> float:
    """1 - lambda, lambda the second-largest |eigenvalue| of the Metropolis-Hastings matrix of the links
    (0 when the graph is disconnected: averaging never reaches everyone)."""
    if len(symmetric) < 2:
        return 1.0
    magnitudes = np.sort(np.abs(np.linalg.eigvalsh(metropolis_hastings_matrix(symmetric))))
    return float(1.0 - magnitudes[-2])


def control_trace(link_model: str, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int,
                  seed: int) -> LinkTrace:
    n, exchanges = scenario.nodes, len(payload_bytes)
    placement = place_devices(scenario, seed)
    off_diagonal = ~np.eye(n, dtype=bool)
    if scenario.access_point:  # only the links to and from the access point (node N) exist
        off_diagonal[:-1, :-1] = False
    meta = {"link_model": link_model, "mode": "offline", "rounds": rounds, "area_side_m": placement.side_m}
    shape = (rounds, exchanges, n, n)
    if link_model == "ideal":
        distance = np.linalg.norm(placement.positions_m[:, None] - placement.positions_m[None], axis=-1)
        potential = (distance < scenario.range_m) & off_diagonal
        up = np.broadcast_to(potential, shape)
    elif link_model == "random_graph":
        potential = off_diagonal.copy()
        draws = np.random.default_rng([seed, 0xC047]).random(shape) < scenario.pair_density
        upper = np.triu(np.ones((n, n), dtype=bool), k=1)
        up = draws & upper
        up = (up | np.swapaxes(up, -1, -2)) & off_diagonal
    elif link_model == "fixed_graph":
        potential = graph_adjacency(scenario.topology, n, scenario.topology_degree)
        up = np.broadcast_to(potential, shape)
        meta.update(topology=scenario.topology, spectral_gap=spectral_gap(potential))
    else:
        raise ValueError(f"link_model: {link_model!r} is not a control; allowed: {', '.join(CONTROL_MODELS)}")
    meta["idle_density"] = (float(np.mean(potential[:-1, -1])) if scenario.access_point
                            else float(potential.sum() / (n * (n - 1))))

    senders = np.array([exchange_senders(scenario, e, p) for e, p in enumerate(payload_bytes)], dtype=np.int64)
    up = up & (senders > 0)[None, :, :, None]  # a node that sends nothing has no link in that exchange
    # Unicast (with an ACK) to each target, or one broadcast frame; devices reach an access point by unicast.
    acknowledged = np.full(n, scenario.transport != "broadcast")
    if scenario.access_point:
        acknowledged[:-1] = True
    copies = np.where(acknowledged, potential.sum(axis=1), 1).clip(min=1)
    done_s = np.full(shape, np.nan, dtype=np.float32)
    rx_bytes = np.zeros(shape, dtype=np.int64)
    air_bytes = np.zeros((rounds, exchanges), dtype=np.int64)
    frames = np.zeros((rounds, exchanges), dtype=np.int64)
    radio_s = np.zeros((rounds, exchanges, n, len(RADIO_STATES)))
    radio_deadline_s, clock_end_s = np.zeros_like(radio_s), np.zeros((rounds, exchanges))
    offsets = send_offsets(seed, rounds, exchanges, n, scenario.start_jitter_s)
    for e, sent in enumerate(senders):
        alone = np.array([message_s(int(sent[i]), scenario.datagram_bytes, scenario.phy_mode,
                                    scenario.datagram_interval_s, int(copies[i]), bool(acknowledged[i]))
                          if sent[i] > 0 else np.inf for i in range(n)])
        finish = offsets[:, e] + alone[None, :]  # (R, N)
        arrived = up[:, e] & (finish <= scenario.deadline_s)[:, :, None]
        clock_end_s[:, e] = exchange_window_s(scenario, up[:, e], finish)
        radio_s[:, e] = airtime_radio_s(scenario, sent, up[:, e], copies, acknowledged, finish, clock_end_s[:, e])
        radio_deadline_s[:, e] = airtime_radio_s(scenario, sent, up[:, e], copies, acknowledged, finish,
                                                 np.full(rounds, scenario.deadline_s))
        done_s[:, e] = np.where(arrived, finish[:, :, None], np.nan)
        rx_bytes[:, e] = np.where(arrived, sent[None, :, None], 0)
        datagrams = np.ceil(sent / scenario.datagram_bytes)
        frames[:, e] = int((datagrams * copies).sum())
        air_bytes[:, e] = int(((sent + datagrams * UDP_FRAME_OVERHEAD_BYTES) * copies).sum())
    return LinkTrace(
        done_s=done_s, rx_bytes=rx_bytes,
        positions=np.broadcast_to(placement.positions_m.astype(np.float32), (rounds, n, 2)).copy(),
        idle_delivered=potential, payload_bytes=tuple(payload_bytes), deadline_s=scenario.deadline_s,
        datagram_bytes=scenario.datagram_bytes, meta=meta,
        intended=np.ascontiguousarray(up), sender_bytes=np.broadcast_to(senders, (rounds, *senders.shape)).copy(),
        air_bytes=air_bytes, frames=frames,
        events=np.zeros((rounds, exchanges), dtype=np.int64), radio_s=radio_s, radio_deadline_s=radio_deadline_s,
        clock_end_s=clock_end_s,
    )


def exchange_window_s(scenario: ScenarioConfig, up: np.ndarray, finish_s: np.ndarray) -> np.ndarray:
    """(R,) how long each round's exchange lasts on the run's clock (``LinkTrace.exchange_end_s``): until its
    last message completed when every message on a link that is up completed by the deadline, else the
    deadline. ``finish_s`` (R, N): when each sender's message completed."""
    last = np.where(up, finish_s[:, :, None], 0.0).max(axis=(1, 2))
    return np.where(up.any(axis=(1, 2)) & (last <= scenario.deadline_s), last, scenario.deadline_s)


def airtime_radio_s(scenario: ScenarioConfig, sent: np.ndarray, up: np.ndarray, copies: np.ndarray,
                    acknowledged: np.ndarray, finish_s: np.ndarray, window_s: np.ndarray) -> np.ndarray:
    """(R, N, 4) estimated seconds per node in tx, rx, idle and sleep over the first ``window_s`` (R,) of one
    exchange: node i sends ``sent[i]`` bytes (0: nothing) in ``copies[i]`` copies, with an ACK per frame where
    ``acknowledged[i]``, completing at ``finish_s`` (R, N); links ``up`` (R, N, N). With radio_sleep a radio
    sleeps from when its own message is out and every message it hears is complete."""
    airtime = np.array([message_radio_s(int(b), scenario.datagram_bytes, scenario.phy_mode) if b > 0 else (0.0, 0.0)
                        for b in sent])
    data_s, acks_s = airtime[:, 0], np.where(acknowledged, airtime[:, 1], 0.0)
    heard = up.astype(float)  # (R, N, N): sender i -> receiver j
    tx_s = (copies * data_s)[None, :] + np.einsum("rij,i->rj", heard, acks_s)  # own frames, ACKs for others'
    rx_s = np.einsum("rij,i->rj", heard, data_s) + (copies * acks_s)[None, :]  # others' frames, ACKs for own
    window = np.broadcast_to(np.asarray(window_s, dtype=float)[:, None], tx_s.shape)
    awake_s = window
    if scenario.radio_sleep:  # awake until its own message is out and it heard all
        heard_by = np.where(up, finish_s[:, :, None], 0.0).max(axis=1)  # (R, N) its last arrival
        awake_s = np.maximum(heard_by, np.where(sent > 0, finish_s, 0.0))
    return busy_within(tx_s, rx_s, awake_s, window)
