"""HyperPrism's table: the base-setting sweep file, and the % change against a hand-computed table."""

import math
from pathlib import Path

import pandas as pd
import pytest

from experiments.paper_table import main, markdown, relative_table
from experiments.sweep import load_sweep
from learner.algorithms import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
TABLE_FILE = ROOT / "experiments" / "configs" / "hyperprism_table.toml"


def test_the_table_sweep_is_the_papers_base_setting_for_every_seed_000_algorithm():
    sweep = load_sweep(TABLE_FILE)
    algorithms = {config.algorithm.name for _, config in sweep.runs}
    assert algorithms == {"hyperprism", "hyperprism-fixed", "swarmsgd", "dpsgd", "mudag", "adom"} <= set(REGISTRY)
    seeds = {config.seed for _, config in sweep.runs}
    assert len(seeds) >= 2 and len(sweep.runs) == len(algorithms) * len(seeds)
    for _, config in sweep.runs:
        assert (config.devices, config.rounds, config.scenario.density, config.data.alpha) == (50, 100, 0.5, 0.1)
        assert config.data.batch_size == 128 and config.model.name == "logreg"
        assert config.network.link_model == "ns3" and dict(config.algorithm.hyperparameters)["lr"] == 0.01


def _table():
    return pd.DataFrame({
        "algorithm.name": ["hyperprism", "dpsgd", "adom"],
        "runs": [2, 2, 2], "reached": [2, 1, 0],
        "max_acc_mean": [0.8, 0.64, 0.5], "max_acc_std": [0.01, 0.02, float("nan")],
        "conv_rounds_mean": [30.0, 60.0, float("nan")],
    })


def test_relative_change_by_hand():
    relative = relative_table(_table(), "hyperprism").set_index("algorithm")
    assert relative.loc["dpsgd", "hyperprism_max_acc_change_pct"] == pytest.approx(25.0)  # (0.8 - 0.64) / 0.64
    assert relative.loc["dpsgd", "hyperprism_conv_rounds_change_pct"] == pytest.approx(50.0)  # (60 - 30) / 60
    assert relative.loc["hyperprism", "hyperprism_conv_rounds_change_pct"] == 0.0
    assert math.isnan(relative.loc["adom", "hyperprism_conv_rounds_change_pct"])  # never reached the target
    text = markdown(relative.reset_index(), "hyperprism", 0.5)
    assert "| dpsgd | 0.6400 ± 0.0200 | 60.0 (1/2) | +25.00% | +50.00% |" in text
    assert "| adom | 0.5000 ± 0.0000 | — (0/2) | +60.00% | — |" in text


def test_unknown_reference_is_refused():
    with pytest.raises(ValueError, match="reference"):
        relative_table(_table(), "nope")


def test_command_writes_csv_and_markdown_beside_the_sweep_table(tmp_path, capsys):
    out = tmp_path / "sweeps" / "hyperprism_table"
    out.mkdir(parents=True)
    _table().to_csv(out / "table.csv", index=False)
    assert main([str(TABLE_FILE), "--results", str(tmp_path)]) == 0
    assert (out / "paper_table.csv").exists() and "+50.00%" in (out / "paper_table.md").read_text()
    assert main([str(TABLE_FILE), "--results", str(tmp_path / "absent")]) == 2
    assert "table.csv" in capsys.readouterr().err
