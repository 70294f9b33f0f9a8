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

Time: all devices start sending at the exchange's start (no collision means
no need for ns-3's start jitter) and their frames take turns on one shared
channel, each frame for the airtime of ``ns3_scenarios.airtime``; a message
completes for all its receivers when its last frame ends
(``airtime.exchange_finish_s``); anything past ``deadline_s`` does not count.
Bytes and frames on the air come from the same model (an estimate).

Energy (an estimate from the same airtime model, not ns-3's energy model): in
each exchange a sender's radio is in TX for the PPDUs of its message (one copy
per target for unicast), a receiver in RX for the PPDUs of every message whose
link is up (and, for unicast, each side spends an ACK's PPDU per frame in the
other state); the rest of the exchange is idle, or, with ``radio_sleep``,
asleep from when the device's own message and every message it hears are
complete. The exchange lasts what the run's clock counts for it
(``exchange_window_s``: until its last message when all arrived by the
deadline, else the deadline), so a control's joules and seconds describe the
same time; ns-3's radios are charged the slot they were simulated for
(deadline + drain).
Joules = current of the state x supply voltage x seconds, with the scenario's
currents.
"""

from __future__ import annotations

import math

import numpy as np

from bridge.link_models import names_of_kind
from bridge.trace import LinkTrace
from ns3_scenarios.airtime import UDP_FRAME_OVERHEAD_BYTES, exchange_finish_s, frames_of, message_radio_s
from ns3_scenarios.scenario import RADIO_STATES, ScenarioConfig, exchange_senders, place_devices

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
    radio_energy_j = np.zeros((rounds, exchanges, n, len(RADIO_STATES)))
    for e, sent in enumerate(senders):
        talking = np.flatnonzero(sent > 0)
        frames_per_sender = [frames_of(int(sent[i]), scenario.datagram_bytes, scenario.phy_mode, int(copies[i]),
                                       bool(acknowledged[i])) for i in talking]
        finish = np.full(n, np.inf)
        finish[talking] = exchange_finish_s(frames_per_sender, scenario.datagram_interval_s)
        on_time = finish <= scenario.deadline_s
        arrived = up[:, e] & on_time[None, :, None]
        radio_energy_j[:, e] = airtime_energy_j(scenario, sent, up[:, e], copies, acknowledged, finish,
                                                exchange_window_s(scenario, up[:, e], finish))
        done_s[:, e] = np.where(arrived, finish[None, :, None], np.nan)
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
        events=np.zeros((rounds, exchanges), dtype=np.int64), radio_energy_j=radio_energy_j,
    )


def exchange_window_s(scenario: ScenarioConfig, up: np.ndarray, finish_s: np.ndarray) -> np.ndarray:
    """(R,) how long each round's exchange lasts on the run's clock (``RoundLinks.duration_s``): until its
    last message completed when every message on a link that is up completed by the deadline, else the
    deadline. The controls charge the radios for this window, not for the slot's deadline + drain."""
    last = np.where(up, finish_s[None, :, None], 0.0).max(axis=(1, 2))
    return np.where(up.any(axis=(1, 2)) & (last <= scenario.deadline_s), last, scenario.deadline_s)


def airtime_energy_j(scenario: ScenarioConfig, sent: np.ndarray, up: np.ndarray, copies: np.ndarray,
                     acknowledged: np.ndarray, finish_s: np.ndarray | None = None,
                     window_s: np.ndarray | None = None) -> np.ndarray:
    """(R, N, 4) estimated joules per node in tx, rx, idle and sleep for one exchange: node i sends ``sent[i]``
    bytes (0: nothing) in ``copies[i]`` copies, with an ACK per frame where ``acknowledged[i]``; links ``up``
    (R, N, N); ``window_s`` (R,): how long the radios are on (default: the slot, deadline + drain). With
    radio_sleep a radio sleeps from when its own message is out and every message it hears is complete
    (``finish_s``, (N,) s after the exchange start) to the end of the window."""
    airtime = np.array([message_radio_s(int(b), scenario.datagram_bytes, scenario.phy_mode) if b > 0 else (0.0, 0.0)
                        for b in sent])
    data_s, acks_s = airtime[:, 0], np.where(acknowledged, airtime[:, 1], 0.0)
    heard = up.astype(float)  # (R, N, N): sender i -> receiver j
    tx_s = (copies * data_s)[None, :] + np.einsum("rij,i->rj", heard, acks_s)  # own frames, ACKs for others'
    rx_s = np.einsum("rij,i->rj", heard, data_s) + (copies * acks_s)[None, :]  # others' frames, ACKs for own
    window = np.full(len(tx_s), scenario.slot_period_s) if window_s is None else np.asarray(window_s, dtype=float)
    window = np.broadcast_to(window[:, None], tx_s.shape)
    awake_s = window
    if scenario.radio_sleep and finish_s is not None:  # awake until its own message is out and it heard all
        heard_by = np.where(up, finish_s[None, :, None], 0.0).max(axis=1)  # (R, N) its last arrival
        awake_s = np.minimum(np.maximum(heard_by, np.where(sent > 0, finish_s, 0.0)[None, :]), window)
    idle_s = np.maximum(awake_s - tx_s - rx_s, 0.0)
    sleep_s = np.maximum(window - np.maximum(awake_s, tx_s + rx_s), 0.0)
    volts = scenario.supply_voltage_v
    return np.stack([scenario.tx_current_a * volts * tx_s, scenario.rx_current_a * volts * rx_s,
                     scenario.idle_current_a * volts * idle_s, scenario.sleep_current_a * volts * sleep_s], axis=-1)
