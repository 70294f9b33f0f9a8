"""HyperPrism's table: the base-setting sweep file, and the % change against a hand-computed table."""

import math
from pathlib import Path

import pandas as pd
import pytest

from experiments.campaigns.paper_table import main, markdown, relative_table
from experiments.run.sweep import load_sweep
from learner.algorithms.registry import ALGORITHMS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
TABLE_FILE = CONFIGS / "hyperprism_density.toml"
COMPARISONS = {"alpha": ("data.alpha", [0.1, 1.0, 10.0]), "density": ("network.density", [0.2, 0.5, 0.8]),
               "devices": ("devices", [20, 50, 100])}
BASE = {"data.alpha": 0.1, "network.density": 0.5, "devices": 50}


@pytest.mark.parametrize("comparison", sorted(COMPARISONS))
def test_the_three_comparisons_are_the_papers_settings_for_every_algorithm_seed_and_control(comparison):
    sweep = load_sweep(CONFIGS / f"hyperprism_{comparison}.toml")
    axis, values = COMPARISONS[comparison]
    algorithms = {config.algorithm.name for _, config in sweep.runs}
    assert algorithms == {"hyperprism", "hyperprism-fixed", "swarmsgd", "dpsgd", "mudag", "adom"} <= set(ALGORITHMS)
    seeds = {config.seed for _, config in sweep.runs}
    assert len(seeds) >= 3 and len(sweep.runs) == len(algorithms) * len(seeds) * len(values) * 2
    settings = {"data.alpha": lambda c: c.data.alpha, "network.density": lambda c: c.scenario.density,
                "devices": lambda c: c.devices}
    for _, config in sweep.runs:
        for other, read in settings.items():
            assert read(config) in values if other == axis else read(config) == BASE[other]
        assert (config.rounds, config.data.batch_size, config.model.name) == (100, 128, "logreg")
        assert config.network.link_model in ("ns3", "random_graph")
        assert dict(config.algorithm.hyperparameters)["lr"] == 0.01


def _table():
    return pd.DataFrame({
        "algorithm.name": ["hyperprism", "dpsgd", "adom"],
        "runs": [2, 2, 2], "reached": [2, 1, 0],
        "max_acc_mean": [0.8, 0.64, 0.5], "max_acc_std": [0.01, 0.02, float("nan")],
        "max_acc_half": [0.09, 0.18, float("nan")],
        "conv_rounds_mean": [30.0, 60.0, float("nan")],
    })


def test_relative_change_by_hand():
    relative = relative_table(_table(), "hyperprism").set_index("algorithm")
    assert relative.loc["dpsgd", "hyperprism_max_acc_change_pct"] == pytest.approx(25.0)  # (0.8 - 0.64) / 0.64
    assert relative.loc["dpsgd", "hyperprism_conv_rounds_change_pct"] == pytest.approx(50.0)  # (60 - 30) / 60
    assert relative.loc["hyperprism", "hyperprism_conv_rounds_change_pct"] == 0.0
    assert math.isnan(relative.loc["adom", "hyperprism_conv_rounds_change_pct"])  # never reached the target
    text = markdown(relative.reset_index(), "hyperprism", 0.5)
    assert "| dpsgd | 0.6400 ± 0.1800 | 60.0 (1/2) | +25.00% | +16.00 | +50.00% | — |" in text  # 0.80 - 0.64
    assert "| adom | 0.5000 ± n/a | — (0/2) | +60.00% | +30.00 | — | — |" in text  # no spread: n/a, not ± 0


def test_unknown_reference_is_refused():
    with pytest.raises(ValueError, match="reference"):
        relative_table(_table(), "nope")


def test_command_writes_one_table_per_setting_beside_the_sweep_table(tmp_path, capsys):
    out = tmp_path / "sweeps" / "hyperprism-density"
    out.mkdir(parents=True)
    both = pd.concat([_table().assign(**{"network.density": d, "network.link_model": "ns3",
                                          "time_to_target_s_mean": 12.5}) for d in (0.2, 0.8)])
    both.to_csv(out / "table.csv", index=False)
    assert main([str(TABLE_FILE), "--results", str(tmp_path)]) == 0
    text = (out / "paper_table.md").read_text()
    assert "network.density = 0.2, network.link_model = ns3" in text and "network.density = 0.8" in text
    assert text.count("+50.00%") == 2 and "| 12.5 |" in text
    # the headline: hyperprism against dpsgd per setting, by hand from _table()
    assert text.startswith("**hyperprism-density: hyperprism against dpsgd**")
    assert ("| network.density = 0.2, network.link_model = ns3 | 30.0 (2/2) | 60.0 (1/2) | +50.0% | +25.0% "
            "| 12.5 / 12.5 | hyperprism (30.0) | hyperprism (12.5) |") in text
    assert len(pd.read_csv(out / "paper_table.csv")) == 6
    assert main([str(TABLE_FILE), "--results", str(tmp_path / "absent")]) == 2
    assert "table.csv" in capsys.readouterr().err


def test_the_cnn_comparisons_are_the_base_setting_with_the_small_cnn():
    paper, ours = load_sweep(CONFIGS / "hyperprism_cnn.toml"), load_sweep(CONFIGS / "hyperprism_cnn_lr.toml")
    for sweep, lr, link_models in ((paper, 0.01, {"ns3", "random_graph"}), (ours, 0.1, {"ns3", "random_graph"})):
        assert {config.network.link_model for _, config in sweep.runs} == link_models
        assert len({config.seed for _, config in sweep.runs}) >= 3
        for _, config in sweep.runs:
            assert (config.model.name, config.rounds, config.data.batch_size) == ("cnn-small", 100, 128)
            assert (config.data.alpha, config.scenario.density, config.devices) == (0.1, 0.5, 50)
            assert dict(config.algorithm.hyperparameters)["lr"] == lr
    assert {"hyperprism", "hyperprism-fixed", "dpsgd"} == {config.algorithm.name for _, config in ours.runs}
