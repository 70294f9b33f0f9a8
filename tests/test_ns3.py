"""Real ns-3: the masks come from simulated 802.11a packets, end to end.

Each worker process imports the ns-3 bindings (about 6-10 s), so these tests
keep scenarios small.
"""

import shutil

import numpy as np
import pandas as pd
import pytest

import bridge.link_source
from bridge import WorkerError, obtain_trace
from bridge.trace import ARRAYS
from experiments.cli import main
from experiments.config import load_config
from ns3_scenarios.network import SCHEDULER_ENV
from ns3_scenarios.scenario import ScenarioConfig
from helpers import run_dirs

# Its tests share a costly module fixture (ns-3 traces or a finished run): one pytest-xdist process builds it once.
pytestmark = [pytest.mark.ns3, pytest.mark.xdist_group("test_ns3")]

DATAGRAM = 1400


def _delivered(trace, exchange=0):
    return sum(int(trace.delivered(r, exchange).sum()) for r in range(trace.rounds))


@pytest.fixture(scope="module")
def dense_trace(tmp_path_factory):
    """8 devices at density 0.9, each round one 1-datagram and one 40-datagram message.

    At 5 ms pacing the 40 datagrams take 0.2 s to send, so under a 0.4 s deadline
    the large message competes with the deadline and with more collisions.
    """
    scenario = ScenarioConfig(devices=8, density=0.9, deadline_s=0.4, start_jitter_s=0.3)
    trace, reused = obtain_trace("ns3", scenario, (DATAGRAM, 40 * DATAGRAM), rounds=3, seed=0,
                                 cache_dir=tmp_path_factory.mktemp("cache"))
    assert not reused
    return scenario, trace


def test_idle_density_is_measured_in_ns3_and_matches_the_target(dense_trace):
    scenario, trace = dense_trace
    n = scenario.devices
    measured = trace.idle_delivered.sum() / (n * (n - 1))
    assert trace.meta["idle_density"] == pytest.approx(measured)
    assert abs(measured - 0.9) <= 1 / (n * (n - 1)) * 2 + 1e-9
    assert trace.meta["events"] > 0 and trace.meta["ns3_version"].startswith("3.")


def test_without_fading_idle_delivery_is_a_disc_of_the_radio_range(dense_trace):
    scenario, trace = dense_trace
    distance = np.linalg.norm(trace.positions[0][:, None] - trace.positions[0][None], axis=-1)
    pairs = ~np.eye(scenario.devices, dtype=bool)
    assert (trace.idle_rate[pairs & (distance < scenario.range_m * 0.999)] == 1).all()
    assert (trace.idle_rate[pairs & (distance > scenario.range_m * 1.001)] == 0).all()
    assert trace.meta["calibration"] == "geometric"
    assert trace.meta["idle_density"] == pytest.approx(trace.meta["geometric_density"])


def test_out_of_range_pairs_never_deliver_and_delivered_pairs_got_every_byte(dense_trace):
    scenario, trace = dense_trace
    positions = trace.positions[0]
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    for r in range(trace.rounds):
        for e, payload in enumerate(trace.payload_bytes):
            delivered = trace.delivered(r, e)
            assert not (delivered & (distance > scenario.range_m * 1.001)).any()
            assert (trace.rx_bytes[r, e][delivered] >= payload).all()
            assert (trace.done_s[r, e][delivered] <= scenario.deadline_s).all()


def test_a_smaller_payload_yields_more_delivered_links(dense_trace):
    _, trace = dense_trace
    small, large = _delivered(trace, 0), _delivered(trace, 1)
    assert small > large
    assert small >= 0.8 * trace.idle_delivered.sum() * trace.rounds  # one datagram rarely collides


def test_a_denser_scenario_yields_more_delivered_links(tmp_path):
    sparse, _ = obtain_trace("ns3", ScenarioConfig(devices=8, density=0.3), (5 * DATAGRAM,), 3, 0, tmp_path)
    dense, _ = obtain_trace("ns3", ScenarioConfig(devices=8, density=0.9), (5 * DATAGRAM,), 3, 0, tmp_path)
    assert _delivered(dense) > _delivered(sparse) > 0


def test_same_scenario_payload_and_seed_give_an_identical_trace_in_another_process(dense_trace, tmp_path):
    scenario, trace = dense_trace
    again, reused = obtain_trace("ns3", scenario, trace.payload_bytes, 3, 0, tmp_path)
    assert not reused
    for name in ARRAYS:
        first, second = getattr(trace, name), getattr(again, name)
        assert first.dtype == second.dtype and first.tobytes() == second.tobytes(), name


def test_pruning_the_event_queue_changes_no_result(dense_trace, tmp_path, monkeypatch):
    """PrunedMapScheduler drops only events due after any run's end: ns-3's own queue gives the same trace."""
    scenario, pruned = dense_trace
    monkeypatch.setenv(SCHEDULER_ENV, "ns3::MapScheduler")
    plain, reused = obtain_trace("ns3", scenario, pruned.payload_bytes, 3, 0, tmp_path)
    assert not reused
    assert pruned.meta["pruned_events"] > 1000 and plain.meta["pruned_events"] == 0
    assert pruned.meta["events"] == plain.meta["events"]
    for name in ARRAYS:
        assert getattr(pruned, name).tobytes() == getattr(plain, name).tobytes(), name


def test_a_failing_worker_raises_a_clear_error_and_caches_nothing(tmp_path):
    broken = ScenarioConfig(devices=4)
    object.__setattr__(broken, "phy_mode", "OfdmRate7Mbps")  # bypass validation to make the worker fail
    with pytest.raises(WorkerError, match="phy_mode") as error:
        obtain_trace("ns3", broken, (DATAGRAM,), 1, 0, tmp_path)
    assert "exited with code" in str(error.value)
    assert not any(tmp_path.iterdir())


def test_end_to_end_run_on_real_ns3_then_replay_from_cache(tmp_path, monkeypatch, capsys):
    config = tmp_path / "e2e.toml"
    config.write_text("""
name = "e2e"
seed = 1
rounds = 3
devices = 5

[data]
dataset = "digits"
alpha = 1.0

[algorithm]
name = "dpsgd"
lr = 0.2

[network]
link_model = "ns3"
density = 0.8
deadline_s = 0.5
start_jitter_s = 0.3
""")
    args = ["run", str(config), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    run_dir = run_dirs(tmp_path / "results")[0]
    metrics = (run_dir / "metrics.csv").read_text()
    links = (run_dir / "links.csv").read_text().splitlines()
    assert links[0].split(",")[:6] == ["round", "exchange", "payload_bytes", "intended_pairs", "in_range_pairs",
                                       "delivered_pairs"]
    assert len(links) == 1 + 3
    assert sum(int(row.split(",")[5]) for row in links[1:]) > 0  # some links really delivered
    assert "simulated new trace" in capsys.readouterr().err

    def no_ns3(*args, **kwargs):
        raise AssertionError("ns-3 must not start when the trace is cached")

    # The same config and seed from scratch (fresh cache, fresh results): byte-identical trace and metrics.
    fresh = ["run", str(config), "--results", str(tmp_path / "again"), "--cache", str(tmp_path / "cache2")]
    assert main(fresh) == 0
    assert (tmp_path / "again" / run_dir.name / "metrics.csv").read_text() == metrics
    (first_trace,), (second_trace,) = (list((tmp_path / c).glob("*/trace.npz")) for c in ("cache", "cache2"))
    assert first_trace.read_bytes() == second_trace.read_bytes()

    monkeypatch.setattr(bridge.link_source, "run_ns3_worker", no_ns3)
    shutil.rmtree(run_dir)  # the run itself would be reused whole; make it again from the cached trace
    assert main(args) == 0
    assert "reused cached trace" in capsys.readouterr().err
    assert (run_dir / "metrics.csv").read_text() == metrics

    # Another algorithm configuration with the same payload replays the same trace: identical masks.
    config.write_text(config.read_text().replace("lr = 0.2", "lr = 0.05"))
    assert main(args) == 0
    other_dir = next(p for p in run_dirs(tmp_path / "results") if p != run_dir)
    assert "reused cached trace" in capsys.readouterr().err
    delivered = ["intended_pairs", "delivered_pairs", "mean_completion_s", "bytes_on_air", "packets_lost"]
    first, other = (pd.read_csv(d / "links.csv") for d in (run_dir, other_dir))
    assert first[delivered].equals(other[delivered])
    # Broadcast: every datagram goes on the air once, headers included, however many devices receive it.
    assert (first["bytes_on_air"] > first["payload_bytes"] * 5).all() and (first["packets_lost"] >= 0).all()
    assert not pd.read_csv(run_dir / "metrics.csv")["sim_time_s"].isna().any()

@pytest.mark.parametrize("name, exchanges", [("dsgt", {1}), ("detag", {1, 2, 3, 4}), ("d2", {1}), ("sgp", {1}),
                                             ("defacto", {4})])
def test_gradient_tracking_algorithms_run_end_to_end_on_real_ns3(tmp_path, name, exchanges):
    config = tmp_path / f"{name}.toml"
    config.write_text(f"""
name = "e2e-{name}"
seed = 2
rounds = 3
devices = 5

[data]
dataset = "digits"
alpha = 0.5

[algorithm]
name = "{name}"
lr = 0.1

[network]
link_model = "ns3"
density = 0.8
deadline_s = 0.5
start_jitter_s = 0.3
""")
    assert main(["run", str(config), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]) == 0
    run_dir = run_dirs(tmp_path / "results")[0]
    links, metrics = pd.read_csv(run_dir / "links.csv"), pd.read_csv(run_dir / "metrics.csv")
    declared = load_config(config).payloads  # its declared messages' bytes; digits logreg: d = 64 * 10 + 10
    for r in (1, 2, 3):
        used = links["payload_bytes"][links["round"] == r]
        assert len(used) in exchanges and tuple(used) == declared[:len(used)]
    assert links["delivered_pairs"].sum() > 0
    assert np.isfinite(metrics["mean_accuracy"]).all() and (np.diff(metrics["sim_time_s"]) > 0).all()
