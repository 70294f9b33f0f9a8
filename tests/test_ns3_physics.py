"""Physics on real ns-3: fading and calibrated density, mobility, transports, payload size, online mode.

One worker per scenario (module-scoped fixtures), small N and few rounds:
each worker process spends most of its time importing ns-3.
"""

import numpy as np
import pytest

import bridge.link_source
from bridge import obtain_trace, open_links
from ns3_scenarios.scenario import ScenarioConfig

# Its tests share a costly module fixture (ns-3 traces or a finished run): one pytest-xdist process builds it once.
pytestmark = [pytest.mark.ns3, pytest.mark.xdist_group("test_ns3_physics")]

SMALL, LARGE = 7000, 56000  # 5 and 40 datagrams of 1400 bytes


def _distances(positions):
    return np.linalg.norm(positions[:, None] - positions[None], axis=-1)


def _off_diagonal(n):
    return ~np.eye(n, dtype=bool)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def faded(cache):
    """12 devices under Rayleigh fading (Nakagami m = 1), 20 idle probes per device."""
    scenario = ScenarioConfig(devices=12, density=0.5, fading="nakagami", nakagami_m=1.0, idle_probes=20)
    return scenario, obtain_trace("ns3", scenario, (1400,), 1, 0, cache)[0]


def test_with_fading_the_area_is_calibrated_by_measurement_to_the_target_density(faded):
    scenario, trace = faded
    assert trace.meta["calibration"] == "measured" and trace.meta["calibration_steps"] >= 1
    assert abs(trace.meta["idle_density"] - scenario.density) <= 0.05
    assert 0 < trace.meta["geometric_density"] <= 1  # what the disc model would have called in range


def test_idle_delivery_falls_with_distance(faded):
    scenario, trace = faded
    pairs = _off_diagonal(scenario.devices)
    distance = _distances(trace.positions[0])[pairs]
    rate = trace.idle_rate[pairs]
    near, middle, far = (rate[part].mean() for part in np.array_split(np.argsort(distance), 3))
    assert near > middle > far
    assert near >= 0.7 and far <= 0.3
    assert 0 < rate.mean() < 1  # fading: neither a disc nor all-or-nothing


@pytest.fixture(scope="module")
def mobile(cache):
    """10 devices on random waypoints at 20 m/s; one datagram per message so collisions are rare."""
    scenario = ScenarioConfig(devices=10, density=0.4, mobility="random_waypoint", speed_mps=20.0, deadline_s=0.5,
                              start_jitter_s=0.4)
    return scenario, obtain_trace("ns3", scenario, (1400,), 10, 0, cache)[0]


def test_with_mobility_devices_move_at_their_speed_and_the_mask_changes_with_the_geometry(mobile):
    scenario, trace = mobile
    step = np.linalg.norm(np.diff(trace.positions, axis=0), axis=-1)
    assert step.max() <= scenario.speed_mps * scenario.slot_period_s * 1.001
    assert np.linalg.norm(trace.positions[-1] - trace.positions[0], axis=-1).max() > 20.0
    masks = [trace.delivered(r) for r in range(trace.rounds)]
    assert any(not np.array_equal(a, b) for a, b in zip(masks, masks[1:]))
    slack = 2 * scenario.speed_mps * scenario.deadline_s  # how far a pair can close in during one exchange
    new_links = 0
    for r, mask in enumerate(masks):
        assert not (mask & (_distances(trace.positions[r]) > scenario.range_m + slack)).any()
        new_links += int((mask & (_distances(trace.positions[0]) > scenario.range_m + slack)).sum())
    assert new_links > 0  # links that did not exist at the start: the devices moved into range


@pytest.fixture(scope="module")
def unicast(cache):
    """10 devices, UDP unicast to 2 random neighbours per exchange, Minstrel rate control."""
    scenario = ScenarioConfig(devices=10, density=0.5, transport="unicast", fanout=2, rate_control="minstrel")
    return scenario, obtain_trace("ns3", scenario, (SMALL,), 3, 0, cache)[0]


def test_unicast_fan_out_addresses_k_random_neighbours_and_delivers_only_to_them(unicast):
    scenario, trace = unicast
    neighbours = trace.idle_delivered & _off_diagonal(scenario.devices)
    expected = np.minimum(neighbours.sum(axis=1), scenario.fanout)
    for r in range(trace.rounds):
        intended = trace.intended[r, 0]
        assert (intended.sum(axis=1) == expected).all()
        assert not (intended & ~neighbours).any()
        delivered = trace.delivered(r)
        assert not (delivered & ~intended).any()
        assert (trace.rx_bytes[r, 0][delivered] == SMALL).all()
    delivered = sum(int(trace.delivered(r).sum()) for r in range(trace.rounds))
    assert delivered >= 0.8 * trace.intended.sum()  # MAC retries recover most losses
    assert any(not np.array_equal(trace.intended[0, 0], trace.intended[r, 0]) for r in range(1, trace.rounds))
    assert (trace.air_bytes[:, 0] > trace.rx_bytes[:, 0].sum(axis=(1, 2))).all()  # headers, ACKs, retries


@pytest.fixture(scope="module")
def tcp(cache):
    scenario = ScenarioConfig(devices=6, density=0.8, transport="tcp")
    return scenario, obtain_trace("ns3", scenario, (14000,), 2, 0, cache)[0]


def test_tcp_delivers_whole_streams_to_every_neighbour(tcp):
    scenario, trace = tcp
    neighbours = trace.idle_delivered & _off_diagonal(scenario.devices)
    for r in range(trace.rounds):
        assert np.array_equal(trace.intended[r, 0], neighbours)
        delivered = trace.delivered(r)
        assert not (delivered & ~neighbours).any()
        assert delivered.sum() >= 0.9 * neighbours.sum()
        assert (trace.rx_bytes[r, 0][delivered] == 14000).all()
    assert (trace.frames[:, 0] > 2 * neighbours.sum() * 10).all()  # data segments, TCP ACKs and MAC ACKs


PACED = ScenarioConfig(devices=6, density=0.9, deadline_s=1.0, start_jitter_s=0.02)


@pytest.fixture(scope="module")
def paced(cache):
    """6 devices that all start within 20 ms, each round one small and one large message."""
    return obtain_trace("ns3", PACED, (SMALL, LARGE), 2, 0, cache)[0]


def test_a_larger_payload_takes_longer(paced):
    for r in range(paced.rounds):
        both = paced.delivered(r, 0) & paced.delivered(r, 1)
        assert both.sum() >= 10
        assert (paced.done_s[r, 1][both] > paced.done_s[r, 0][both]).all()
        assert np.median(paced.done_s[r, 1][both]) > 39 * PACED.datagram_interval_s  # 40 paced datagrams


def test_online_mode_simulates_each_exchange_as_sent_and_replays_it_from_the_cache(paced, cache, monkeypatch):
    plan = [(SMALL, LARGE), (SMALL, 14000), (SMALL, 28000), (SMALL, [LARGE] + [SMALL] * 5)]

    def run():
        source = open_links("online", "ns3", PACED, (SMALL, LARGE), len(plan), 0, cache)
        for r, payloads in enumerate(plan):
            links = source.round_links(r)
            for payload in payloads:
                links.exchange(payload)
        return source, source.finish()

    online, reused = run()
    trace = online.trace
    assert not reused and online.simulated == 2 * len(plan)
    # The first round sent what the offline trace sent: the same simulation, so the same result.
    assert np.array_equal(trace.done_s[0], paced.done_s[0], equal_nan=True)
    assert np.array_equal(trace.rx_bytes[0], paced.rx_bytes[0])
    # Completion times follow the payload of each round ...
    medians = [np.nanmedian(trace.done_s[r, 1]) for r in range(3)]
    assert medians[1] < medians[2] < medians[0]  # 14000 < 28000 < 56000 bytes
    # ... and of each sender: device 0 sent 40 datagrams, the others 5.
    last = trace.done_s[3, 1]
    assert np.nanmin(last[0]) > np.nanmax(last[1:])
    assert trace.sender_bytes[3, 1].tolist() == [LARGE] + [SMALL] * 5

    def no_ns3(*args):
        raise AssertionError("ns-3 must not start when the same payloads were cached")

    monkeypatch.setattr(bridge.worker, "worker_command", no_ns3)
    again, reused = run()
    assert reused and again.replayed == 2 * len(plan)
    assert np.array_equal(again.trace.done_s, trace.done_s, equal_nan=True)
