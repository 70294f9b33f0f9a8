"""Heterogeneous devices: per-device step times from a declared distribution, on the round's clock and energy."""

import json

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from experiments.run.compute import step_times
from experiments.config import NetworkConfig
from helpers import run_dir_of, run_dirs

RUN = ('name = "{name}"\nrounds = 6\ndevices = 20\n[data]\ndataset = "digits"\n[network]\n'
       'link_model = "synthetic"\ncompute_s_per_step = 0.1\ncompute_power_w = 2.0\n{extra}\n')


def _run(tmp_path, name, extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(RUN.format(name=name, extra=extra))
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--quiet"]) == 0
    run_dir = run_dir_of(tmp_path / "r", path)
    return pd.read_csv(run_dir / "metrics.csv"), run_dir


def test_stragglers_set_the_synchronous_rounds_pace_and_pay_their_own_compute(tmp_path):
    constant, _ = _run(tmp_path, "constant")
    slow, _ = _run(tmp_path, "slow", 'compute_model = "stragglers"\nstraggler_fraction = 0.1\n'
                                    'straggler_slowdown = 5.0')
    # D-PSGD: one local step a round; the round waits for the two stragglers' 0.5 s instead of 0.1 s.
    np.testing.assert_allclose(np.diff(slow["sim_time_s"]) - np.diff(constant["sim_time_s"]), 0.4, rtol=1e-6)
    # Compute energy: 2 W x (18 x 0.1 s + 2 x 0.5 s) a round against 2 W x 20 x 0.1 s.
    assert slow["compute_energy_j"].iloc[1:].tolist() == pytest.approx([2.0 * (18 * 0.1 + 2 * 0.5)] * 6)
    assert constant["compute_energy_j"].iloc[1:].tolist() == pytest.approx([2.0 * 20 * 0.1] * 6)
    assert slow["mean_accuracy"].equals(constant["mean_accuracy"])  # the learning itself is unchanged


def test_the_distributions_by_hand():
    network = NetworkConfig(link_model="synthetic", compute_s_per_step=0.2, compute_model="lognormal",
                            compute_sigma=0.8)
    times = step_times(network, 20_000, seed=3)
    assert times.mean() == pytest.approx(0.2, rel=0.02) and np.log(times).std() == pytest.approx(0.8, rel=0.02)
    assert np.array_equal(times, step_times(network, 20_000, seed=3))  # drawn from the seed
    stragglers = step_times(NetworkConfig(link_model="synthetic", compute_s_per_step=0.2, compute_model="stragglers",
                                          straggler_fraction=0.25, straggler_slowdown=3.0), 8, seed=0)
    assert sorted(stragglers.tolist()) == pytest.approx([0.2] * 6 + [0.6] * 2)


def test_a_csv_of_measured_step_times_is_read_checked_and_fingerprinted(tmp_path, capsys):
    csv = tmp_path / "steps.csv"
    csv.write_text("step_s\n" + "\n".join(str(0.1 + 0.01 * k) for k in range(20)) + "\n")
    extra = f'compute_model = "csv"\ncompute_csv = "{csv}"'
    metrics, run_dir = _run(tmp_path, "measured", extra)
    constant, _ = _run(tmp_path, "constant")
    # The slowest device (0.29 s a step) paces every round instead of 0.1 s.
    np.testing.assert_allclose(np.diff(metrics["sim_time_s"]) - np.diff(constant["sim_time_s"]), 0.19, rtol=1e-6)
    assert metrics["compute_energy_j"].iloc[1] == pytest.approx(2.0 * sum(0.1 + 0.01 * k for k in range(20)))
    first = json.loads((run_dir / "run.json").read_text())["code_fingerprint"]
    csv.write_text("step_s\n" + "\n".join("0.2" for _ in range(20)) + "\n")  # other devices: another run
    capsys.readouterr()
    _run(tmp_path, "measured", extra)
    assert "recomputing" in capsys.readouterr().err
    assert json.loads((run_dir / "run.json").read_text())["code_fingerprint"] != first
    csv.write_text("step_s\n0.1\n0.2\n")
    path = tmp_path / "bad.toml"
    path.write_text(RUN.format(name="bad", extra=extra))
    assert main(["run", str(path), "--results", str(tmp_path / "r2")]) == 2
    assert "network.compute_csv:" in capsys.readouterr().err and not (tmp_path / "r2").exists()
