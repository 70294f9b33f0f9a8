"""The ablation ladder's derived rungs: what each keeps of the ns-3 trace, and what it changes."""

import numpy as np
import pytest

from bridge import obtain_trace, trace_key
from bridge.ladder import LADDER_MODELS, ladder_trace, measured_density, pair_rates
from bridge.synthetic import synthetic_trace
from experiments.cli import main
from ns3_scenarios.scenario import ScenarioConfig

ROUNDS = 400


@pytest.fixture(scope="module")
def source():
    """A stand-in for an ns-3 trace (the derivation reads only the trace): lossy, per pair, over many exchanges."""
    return synthetic_trace(ScenarioConfig(devices=8, density=0.5), 3, ROUNDS, (2600,), delivery_probability=0.6)


def test_the_independent_loss_rung_keeps_each_pairs_delivery_rate_within_sampling_error(source):
    derived = ladder_trace("ns3_independent_loss", source, seed=7)
    rates, kept = pair_rates(source), pair_rates(derived)
    addressed = source.intended.sum(axis=(0, 1))
    assert np.array_equal(derived.intended, source.intended)
    for i, j in zip(*np.nonzero(addressed)):
        sigma = np.sqrt(rates[i, j] * (1 - rates[i, j]) / addressed[i, j])
        assert abs(kept[i, j] - rates[i, j]) <= 4 * sigma + 1e-12, (i, j)  # 4 sigma: no false alarm over 30 pairs
    # ... but its losses are independent: the source's exchange-to-exchange pattern is not copied.
    assert not np.array_equal(np.isnan(derived.done_s), np.isnan(source.done_s))


def test_geometry_is_lossless_on_the_neighbour_graph_and_the_random_graph_keeps_the_measured_density(source):
    geometry = ladder_trace("ns3_geometry", source, seed=7)
    neighbours = source.idle_delivered & ~np.eye(source.devices, dtype=bool)
    assert (~np.isnan(geometry.done_s) == neighbours).all()
    graph = ladder_trace("ns3_random_graph", source, seed=7)
    delivered = ~np.isnan(graph.done_s)
    assert (delivered == np.swapaxes(delivered, -1, -2)).all()  # both ways, as the papers' graph
    assert measured_density(graph) == pytest.approx(measured_density(source), abs=0.01)
    ideal = ladder_trace("ns3_ideal", source, seed=7)  # the complete graph: every pair, every exchange
    assert (~np.isnan(ideal.done_s) == ~np.eye(source.devices, dtype=bool)).all()
    assert measured_density(ideal) == 1.0


def test_every_rung_keeps_the_ns3_clock_and_energy(source):
    for model in LADDER_MODELS:
        derived = ladder_trace(model, source, seed=1)
        assert np.array_equal(derived.radio_s, source.radio_s)
        assert np.array_equal(derived.positions, source.positions) and derived.meta["link_model"] == model
        both = ~np.isnan(derived.done_s) & ~np.isnan(source.done_s)
        assert np.array_equal(derived.done_s[both], source.done_s[both])  # ns-3's own completion where it delivered
        assert np.nanmax(derived.done_s) <= source.deadline_s


@pytest.mark.ns3
def test_a_rung_reuses_the_cached_ns3_trace_without_starting_ns3(tmp_path, monkeypatch, capsys):
    text = ('rounds = 5\ndevices = 6\n[data]\ndataset = "digits"\n[network]\nlink_model = "{model}"\n'
            'density = 0.8\n')
    (tmp_path / "ns3.toml").write_text(text.format(model="ns3"))
    args = ["--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--quiet"]
    assert main(["run", str(tmp_path / "ns3.toml"), *args]) == 0
    from bridge import worker

    monkeypatch.setattr(worker, "worker_command", lambda *a: ["false"])  # any ns-3 start would now fail
    for model in LADDER_MODELS:
        (tmp_path / f"{model}.toml").write_text(text.format(model=model))
        assert main(["run", str(tmp_path / f"{model}.toml"), *args]) == 0, capsys.readouterr().err
    scenario = ScenarioConfig(devices=6, density=0.8)
    ns3, reused = obtain_trace("ns3", scenario, (2600,), 5, 0, tmp_path / "c")
    assert reused and (tmp_path / "c" / trace_key("ns3_geometry", scenario, (2600,), 5, 0)).is_dir()
