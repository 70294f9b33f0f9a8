"""The server architecture: the access-point scenario in ns-3 and its controls, and runs through it."""

import json

import numpy as np
import pandas as pd
import pytest

from bridge import obtain_trace
from experiments.cli import main
from helpers import run_dirs
from ns3_scenarios.scenario import ScenarioConfig, exchange_senders, place_devices

# Its tests share a costly module fixture (ns-3 traces or a finished run): one pytest-xdist process builds it once.
pytestmark = pytest.mark.xdist_group("test_server")

SMALL, LARGE = 7000, 42000  # 5 and 30 datagrams of 1400 bytes
# Seed 3, 6 devices, coverage 0.7: four devices within the access point's 51.5 m, two outside.
SCENARIO = ScenarioConfig(devices=6, density=0.7, topology="access_point")
SEED = 3


def _in_range():
    positions = place_devices(SCENARIO, SEED).positions_m
    return np.linalg.norm(positions[:-1] - positions[-1], axis=1) < SCENARIO.range_m


def test_the_access_point_sits_at_the_centre_and_covers_the_target_fraction_of_devices():
    placement = place_devices(SCENARIO, SEED)
    assert placement.positions_m.shape == (7, 2)
    np.testing.assert_allclose(placement.positions_m[-1], [placement.side_m / 2] * 2)
    assert _in_range().sum() == round(0.7 * 6) and placement.geometric_density == pytest.approx(4 / 6)


def test_exchanges_alternate_uploads_from_every_device_and_downloads_from_the_server():
    assert exchange_senders(SCENARIO, 0, 100) == [100] * 6 + [0]
    assert exchange_senders(SCENARIO, 1, 200) == [0] * 6 + [200]
    assert exchange_senders(ScenarioConfig(devices=3), 1, 50) == [50] * 3


@pytest.fixture(scope="module")
def server_traces(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {payload: obtain_trace("ns3", SCENARIO, (payload, payload), 2, SEED, cache)[0]
            for payload in (SMALL, LARGE)}


@pytest.mark.ns3
def test_ns3_uplink_and_downlink_carry_the_real_bytes_to_and_from_the_devices_in_range(server_traces):
    covered = _in_range()
    for payload, trace in server_traces.items():
        assert trace.devices == 7 and trace.meta["idle_density"] == pytest.approx(4 / 6)
        assert (trace.idle_delivered[:-1, -1] == covered).all() and (trace.idle_delivered[-1, :-1] == covered).all()
        for r in range(2):
            uplink, downlink = trace.rx_bytes[r, 0], trace.rx_bytes[r, 1]
            assert (uplink[:-1, -1] == np.where(covered, payload, 0)).all()  # every byte up, nothing from outside
            assert (downlink[-1, :-1] == np.where(covered, payload, 0)).all()  # every byte down, nobody outside
            assert (trace.delivered(r, 0)[:-1, -1] == covered).all() and (trace.delivered(r, 1)[-1, :-1] == covered).all()
            assert not trace.delivered(r, 0)[:-1, :-1].any() and not trace.delivered(r, 1)[:-1].any()
            assert (trace.sender_bytes[r, 0] == exchange_senders(SCENARIO, 0, payload)).all()
            # on the air: at least every byte of every covered device's message up, and the one broadcast down
            assert trace.air_bytes[r, 0] >= covered.sum() * payload and trace.air_bytes[r, 1] >= payload
        outside = np.flatnonzero(~covered)
        assert (trace.radio_s[:, 0, outside, 0] == 0).all()  # a device out of range never transmits


@pytest.mark.ns3
def test_ns3_a_larger_payload_takes_longer_up_and_down(server_traces):
    # Same seed, so each sender starts at the same jittered time in both traces: only the payload differs.
    small, large = server_traces[SMALL], server_traces[LARGE]
    for exchange, pairs in ((0, (slice(None), slice(0, 6), -1)), (1, (slice(None), -1, slice(0, 6)))):
        a, b = small.done_s[:, exchange][pairs], large.done_s[:, exchange][pairs]
        delivered = ~np.isnan(a)
        assert delivered.sum() >= 8 and (~np.isnan(b) == delivered).all()
        assert (b[delivered] > a[delivered]).all() and (b - a)[delivered].mean() > 0.1  # 25 more datagrams, 5 ms apart


RUN = """name = "server"
seed = 3
rounds = 8
devices = 6
[data]
dataset = "digits"
alpha = 1.0
[algorithm]
name = "{algorithm}"
[network]
link_model = "{link_model}"
topology = "access_point"
density = 0.7
server_compute_s = 0.25
"""


@pytest.mark.parametrize("algorithm", ["fedavg", "dense_sgd", "esgd", "dgc"])
def test_server_algorithms_run_over_the_lossless_control_and_devices_out_of_range_never_learn(tmp_path, algorithm):
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(algorithm=algorithm, link_model="ideal"))
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--quiet"]) == 0
    [run] = run_dirs(tmp_path / "r")
    metrics, devices = pd.read_csv(run / "metrics.csv"), pd.read_csv(run / "devices.csv")
    links = pd.read_csv(run / "links.csv")
    assert json.loads((run / "run.json").read_text())["status"] == "done"
    covered = _in_range()
    initial = metrics["mean_accuracy"].iloc[0]
    inside, outside = devices.loc[covered, "final_accuracy"], devices.loc[~covered, "final_accuracy"]
    assert inside.nunique() == 1 and inside.iloc[0] > initial  # all hold the server's one global model
    if algorithm == "fedavg":  # outside the access point's range a device only trains on its own data
        assert not outside.isin(inside).any()
    else:  # no download ever reaches it, and its model moves only when one does
        assert (outside == initial).all()
    assert list(links["exchange"].unique()) == [0, 1] and (links["delivered_pairs"] == covered.sum()).all()
    assert np.allclose(links["measured_density"], covered.mean())  # the coverage: 4 of 6 devices each way
    # each round: the two exchanges' airtime plus the server's 0.25 s and the local steps' compute
    assert (metrics["sim_time_s"].diff().dropna() > 0.25).all()


@pytest.mark.parametrize("algorithm,topology,expected", [
    ("fedavg", "adhoc", 'network.topology: \'adhoc\' is not allowed; expected "access_point" for fedavg'),
    ("dpsgd", "access_point", "network.topology: 'access_point' is not allowed; expected not \"access_point\""),
])
def test_an_algorithm_on_the_wrong_architecture_is_refused_naming_the_topology(tmp_path, capsys, algorithm,
                                                                                topology, expected):
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(algorithm=algorithm, link_model="ideal").replace('"access_point"', f'"{topology}"'))
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c")]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "r").exists() or not run_dirs(tmp_path / "r")
