"""Control link models: the papers' network abstractions, cached and replayed like ns-3 traces, never ns-3.

The airtime model they use for time is checked against ns-3 itself (marked ``ns3``).
"""

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch

import bridge.link_source
from bridge import obtain_trace, trace_key
from bridge.controls import control_trace, graph_adjacency, spectral_gap
from experiments.cli import main
from helpers import run_dir_of, run_dirs
from learner.mixing import metropolis_hastings
from messages.schedules import send_offsets
from ns3_scenarios.airtime import frame_s, message_s, ppdu_s
from ns3_scenarios.scenario import ScenarioConfig

CONFIG = """name = "control"
rounds = 20
devices = 20
[data]
dataset = "digits"
[algorithm]
name = "dpsgd"
[network]
link_model = "{model}"
density = 0.4
{extra}
"""


@pytest.fixture
def no_ns3(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a control link model must never start ns-3")

    monkeypatch.setattr(bridge.link_source, "run_ns3_worker", refuse)


def _run(tmp_path, model, extra="", results="results"):
    path = tmp_path / f"{model}.toml"
    path.write_text(CONFIG.format(model=model, extra=extra))
    assert main(["run", str(path), "--results", str(tmp_path / results), "--cache", str(tmp_path / "cache"),
                 "--quiet"]) == 0
    return run_dir_of(tmp_path / results, path)


def test_ideal_delivers_every_in_range_pair_every_exchange_without_ns3(tmp_path, no_ns3):
    run_dir = _run(tmp_path, "ideal")
    links = pd.read_csv(run_dir / "links.csv")
    idle = json.loads((run_dir / "run.json").read_text())["trace_meta"]["idle_density"]
    assert len(links) == 20 and (links["link_model"] == "ideal").all()
    assert np.allclose(links["measured_density"], idle) and idle == pytest.approx(0.4, abs=0.01)
    assert (links["packets_lost"] == 0).all() and (links["delivered_pairs"] == links["in_range_pairs"]).all()
    # Duration from the airtime model, not the deadline: each of 20 senders of 650 parameters (2,600 B, 2
    # datagrams) sends at its offset after the compute (U(0, 1 s), keyed like every schedule's) and its message
    # takes its own airtime; the round ends when the last one is complete.
    metrics = pd.read_csv(run_dir / "metrics.csv")
    per_round = metrics["sim_time_s"].diff().dropna().to_numpy()
    alone = message_s(2600, 1400, "OfdmRate24Mbps", 0.005)
    assert alone == pytest.approx(0.005 + frame_s(1200, "OfdmRate24Mbps", False))  # paced 5 ms apart
    offsets = send_offsets(0, 20, 1, 20, 1.0)[:, 0]  # (rounds, devices)
    np.testing.assert_allclose(per_round, 0.05 + offsets.max(axis=1) + alone, rtol=1e-6)


def test_random_graph_density_per_round_is_near_the_target_without_ns3(tmp_path, no_ns3):
    links = pd.read_csv(_run(tmp_path, "random_graph") / "links.csv")
    assert (links["link_model"] == "random_graph").all()
    assert abs(links["measured_density"].mean() - 0.4) <= 0.05


def test_random_graph_is_symmetric_lossless_and_hits_its_density_over_many_exchanges():
    trace = control_trace("random_graph", ScenarioConfig(devices=30, density=0.3), (4000, 4000), 200, seed=5)
    delivered = ~np.isnan(trace.done_s)
    assert np.array_equal(delivered, np.swapaxes(delivered, -1, -2))  # each pair up both ways
    assert np.array_equal(trace.rx_bytes[delivered], np.full(delivered.sum(), 4000))  # lossless
    assert abs(delivered.sum() / (400 * 30 * 29) - 0.3) <= 0.02
    # Different exchanges draw different graphs.
    assert not np.array_equal(delivered[0, 0], delivered[0, 1])


@pytest.mark.parametrize("topology, degree", [("ring", 1), ("torus", 1), ("circulant", 3), ("star", 1),
                                              ("complete", 1), ("circulant", 9)])
def test_a_fixed_graphs_reported_gap_matches_numpy_eigenvalues_of_the_learners_matrix(topology, degree):
    n = 20
    adjacency = graph_adjacency(topology, n, degree)
    assert np.array_equal(adjacency, adjacency.T) and not adjacency.diagonal().any()
    weights = metropolis_hastings(torch.from_numpy(adjacency), dtype=torch.float64).numpy()
    eigenvalues = np.sort(np.abs(np.linalg.eigvals(weights)))
    assert spectral_gap(adjacency) == pytest.approx(1.0 - eigenvalues[-2], abs=1e-9)
    trace = control_trace("fixed_graph", ScenarioConfig(devices=n, topology=topology, topology_degree=degree),
                          (4000,), 3, seed=0)
    assert trace.meta["spectral_gap"] == spectral_gap(adjacency)
    assert all(np.array_equal(~np.isnan(trace.done_s[r, 0]), adjacency) for r in range(3))


def test_fixed_graphs_reach_gaps_from_1_down_to_about_0_01():
    assert spectral_gap(graph_adjacency("complete", 20)) == pytest.approx(1.0)
    assert spectral_gap(graph_adjacency("ring", 36)) == pytest.approx(0.0101, abs=1e-4)  # 2/3 (1 - cos 2π/36)
    gaps = [spectral_gap(graph_adjacency("circulant", 40, k)) for k in range(1, 20)]
    assert gaps == sorted(gaps) and gaps[0] < 0.01 < 0.1 < gaps[-1]


def test_fixed_graph_gap_is_in_run_json_and_links_csv(tmp_path, no_ns3):
    run_dir = _run(tmp_path, "fixed_graph", 'topology = "ring"')
    gap = json.loads((run_dir / "run.json").read_text())["trace_meta"]["spectral_gap"]
    assert gap == pytest.approx(2 / 3 * (1 - np.cos(2 * np.pi / 20)), abs=1e-9)
    assert np.allclose(pd.read_csv(run_dir / "links.csv")["spectral_gap"], gap)


def test_control_cache_keys_name_the_model_and_controls_replay_from_the_cache(tmp_path, no_ns3):
    scenario = ScenarioConfig(devices=6)
    keys = {model: trace_key(model, scenario, (100,), 3, 0) for model in ("ns3", "ideal", "random_graph")}
    assert len(set(keys.values())) == 3
    first, reused = obtain_trace("ideal", scenario, (100,), 3, 0, tmp_path)
    again, reused_again = obtain_trace("ideal", scenario, (100,), 3, 0, tmp_path)
    assert not reused and reused_again and np.array_equal(first.done_s, again.done_s, equal_nan=True)


def test_replaying_a_control_costs_under_a_millisecond_per_round_at_100_devices():
    trace = control_trace("random_graph", ScenarioConfig(devices=100), (31400,), 50, seed=0)
    started = time.perf_counter()
    for r in range(50):
        links = trace.round_links(r)
        links.exchange(31400)
        links.duration_s
    # Generous: the bench measures it; this only guards an order of magnitude (a control is a replay).
    assert (time.perf_counter() - started) / 50 < 0.01


@pytest.mark.parametrize("text, field", [
    ('link_model = "perfect"', "network.link_model"),
    ('link_model = "ideal"\ntopology = "ring"', "network.topology"),
    ('link_model = "random_graph"\ntopology = "torus"', "network.topology"),
    ('link_model = "fixed_graph"', "network.topology"),
    ('link_model = "fixed_graph"\ntopology = "hypercube"', "network.topology"),
    ('link_model = "fixed_graph"\ntopology = "circulant"\ntopology_degree = 10', "network.topology_degree"),
    ('link_model = "ideal"\nmode = "online"', "network.mode"),
])
def test_bad_control_settings_exit_2_naming_the_field(tmp_path, capsys, text, field):
    path = tmp_path / "bad.toml"
    path.write_text(f'devices = 20\n[data]\ndataset = "digits"\n[network]\n{text}\n')
    assert main(["run", str(path), "--results", str(tmp_path / "results")]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_the_airtime_model_by_hand():
    # 1400-byte datagram at 24 Mbps: PSDU 1464 B -> ceil((22 + 11712) / 96) = 123 symbols.
    assert ppdu_s(1464, "OfdmRate24Mbps") == pytest.approx(20e-6 + 123 * 4e-6)
    assert frame_s(1400, "OfdmRate24Mbps", False) == pytest.approx(34e-6 + 67.5e-6 + 512e-6)
    # Paced: 23 datagrams 5 ms apart last 22 intervals plus the last frame.
    assert message_s(31400, 1400, "OfdmRate24Mbps", 0.005) == pytest.approx(
        22 * 0.005 + frame_s(600, "OfdmRate24Mbps", False))


@pytest.mark.ns3
@pytest.mark.parametrize("phy_mode", ["OfdmRate24Mbps", "OfdmRate6Mbps"])
def test_one_device_alone_on_an_idle_ns3_channel_completes_within_5_percent_of_the_airtime_model(phy_mode):
    from bridge.worker import WorkerProcess

    scenario = ScenarioConfig(devices=2, density=1.0, phy_mode=phy_mode, start_jitter_s=0.0,
                              datagram_interval_s=0.0, deadline_s=5.0)
    worker = WorkerProcess({"scenario": scenario.__dict__, "seed": 0}, "airtime check", 300.0)
    try:
        answer = worker.ask({"slot": 0, "payloads": [31400, 0]})  # device 1 stays silent
    finally:
        worker.close()
    done = np.array(answer["done_s"]).reshape(2, 2)[0, 1]
    model = message_s(31400, 1400, phy_mode, 0.0)
    assert done == pytest.approx(model, rel=0.05), (done, model)


def test_a_sweep_over_link_models_gives_one_table_and_plots_that_tell_them_apart(tmp_path, no_ns3, monkeypatch):
    import matplotlib.figure

    from experiments.run.sweep import expand_sweep, run_sweep

    labels = {}

    def capture(figure, path, *args, **kwargs):
        legends = [axis.get_legend() for axis in figure.axes if axis.get_legend()] + list(figure.legends)
        labels[path.name] = {text.get_text() for legend in legends for text in legend.get_texts()}
        labels[path.name].add(figure._suptitle.get_text() if figure._suptitle else "")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    raw = {"rounds": 5, "devices": 8, "seed": [0, 1], "sweep": {"name": "controls", "target_accuracy": 0.3},
           "data": {"dataset": "digits"}, "algorithm": {"name": ["dpsgd", "dsgt"]},
           "network": {"link_model": ["ideal", "random_graph"], "density": 0.5}}
    summary = run_sweep(expand_sweep(raw), tmp_path / "results", tmp_path / "cache", quiet=True)
    assert set(summary["network.link_model"]) == {"ideal", "random_graph"} and (summary["status"] == "done").all()
    table = (tmp_path / "results" / "sweeps" / "controls" / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("|"))
    assert "network.link_model" in header and "| ideal |" in table and "| random_graph |" in table
    assert {"dpsgd / ideal (2 seeds drawn)", "dpsgd / random_graph (2 seeds drawn)", "dsgt / ideal (2 seeds drawn)",
            "dsgt / random_graph (2 seeds drawn)"} <= labels["accuracy_rounds.png"]  # a line per algorithm and link model
    assert any(text.endswith("link model: ideal, random_graph; schedule rounds; N 8; density 0.5; alpha 0.1")
               for text in labels["accuracy_time.png"])


def test_every_link_model_is_one_record_that_the_pieces_read():
    """The link models' facts live in bridge/link_models.py only: the controls, the ladder's rungs, the config's
    allowed names, the plots' line styles and the captions' clocks all come from the records."""
    from bridge.controls import CONTROL_MODELS
    from bridge.ladder import LADDER_MODELS
    from bridge.link_models import KINDS, LINK_MODELS
    from experiments.analysis.plots import line_style

    assert CONTROL_MODELS == ("ideal", "random_graph", "fixed_graph")
    assert LADDER_MODELS == ("ns3_ideal", "ns3_random_graph", "ns3_geometry", "ns3_independent_loss")
    assert all(record.kind in KINDS and record.clock and line_style(name) == record.style
               for name, record in LINK_MODELS.items())
    assert [name for name, record in LINK_MODELS.items() if record.message_core] == ["ns3", *CONTROL_MODELS]
    assert line_style("a model of an older run") == "-."
