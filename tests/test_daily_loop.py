"""The researcher's daily loop: per-device results, positions and topology, `compare`, `show` on several
runs, "did you mean", the algorithm catalogue."""

import json

import numpy as np
import pandas as pd
import pytest

from bridge import obtain_trace
from experiments.cli import main
from experiments.config import parse_config
from experiments.run.runner import trace_request
from helpers import run_dirs

SWEEP = ('rounds = 12\ndevices = 5\neval_every = {every}\nseed = [0, 1]\n[sweep]\nname = "loop"\n'
         'target_accuracy = 0.3\n[data]\ndataset = "digits"\n[algorithm]\nname = ["dpsgd", "dsgt"]\n'
         '[network]\nlink_model = "{model}"\n')


def _sweep(tmp_path, capsys, model="synthetic", every=1):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "loop.toml"
    path.write_text(SWEEP.format(model=model, every=every))
    assert main(["sweep", str(path), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"),
                 "--quiet", "--workers", "1"]) == 0
    capsys.readouterr()
    return [d for d in run_dirs(tmp_path / "results") if d.name not in ("sweeps", "compare")]


@pytest.mark.parametrize("every", [1, 3])
def test_device_metrics_hold_each_devices_evaluation_and_agree_with_metrics(tmp_path, capsys, every):
    for run_dir in _sweep(tmp_path, capsys, every=every):
        devices = pd.read_csv(run_dir / "device_metrics.csv")
        metrics = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["mean_accuracy"])
        assert list(devices.columns) == ["round", "sim_time_s", "device", "local_steps", "accuracy", "test_loss",
                                         "clock_s", "radio_tx_s", "radio_rx_s", "radio_idle_s", "radio_sleep_s",
                                         "compute_s", "energy_j"]
        # The devices' ledgers add up to the run's: joules and each radio state, round by round.
        totals = devices.groupby("round")[["energy_j", "radio_idle_s", "compute_s"]].sum()
        np.testing.assert_allclose(totals["energy_j"], metrics["cumulative_energy_j"], rtol=1e-6)
        np.testing.assert_allclose(totals["radio_idle_s"], metrics["radio_idle_s"], rtol=1e-6)
        np.testing.assert_allclose(totals["compute_s"], metrics["compute_s"], rtol=1e-6)
        steps = devices.groupby("round")["local_steps"]
        assert (steps.nunique() == 1).all()  # synchronous rounds: every device has taken as many steps
        np.testing.assert_array_equal(steps.first(), metrics["local_steps"])
        assert sorted(devices["round"].unique()) == metrics["round"].tolist()  # the evaluated rounds only
        assert metrics["round"].tolist() == sorted({0, 12, *range(every, 13, every)})
        per_round = devices.groupby("round")
        assert (per_round["device"].count() == 5).all()
        np.testing.assert_allclose(per_round["accuracy"].mean(), metrics["mean_accuracy"], rtol=1e-6)
        np.testing.assert_allclose(per_round["accuracy"].min(), metrics["min_accuracy"], rtol=1e-6)
        np.testing.assert_allclose(per_round["accuracy"].max(), metrics["max_accuracy"], rtol=1e-6)
        np.testing.assert_allclose(per_round["test_loss"].mean(), metrics["test_loss"], rtol=1e-5)
        last = devices[devices["round"] == 12].set_index("device")["accuracy"]
        final = pd.read_csv(run_dir / "devices.csv").set_index("device")["final_accuracy"]
        np.testing.assert_allclose(last, final, rtol=1e-6)
        assert (run_dir / "devices.png").stat().st_size > 0


def test_positions_and_topology_over_a_placed_network_only(tmp_path, capsys):
    run_dir = _sweep(tmp_path, capsys)[0]
    config = parse_config(json.loads(json.dumps(_config_of(run_dir))))
    trace, _ = obtain_trace(**trace_request(config), cache_dir=tmp_path / "cache")
    positions = pd.read_csv(run_dir / "positions.csv")
    assert positions["round"].unique().tolist() == [1]  # static: the first round's only
    np.testing.assert_allclose(positions[["x_m", "y_m"]].to_numpy(), trace.positions[0], rtol=1e-6)
    assert (positions["role"] == "device").all() and (run_dir / "topology.png").stat().st_size > 0
    for other in _sweep(tmp_path / "graph", capsys, model="random_graph"):
        assert not (other / "positions.csv").exists() and not (other / "topology.png").exists()


def _config_of(run_dir):
    import tomllib

    return tomllib.loads((run_dir / "config.toml").read_text())


def test_compare_two_runs_and_a_sweep_tables_what_the_runs_csvs_say(tmp_path, capsys):
    runs = _sweep(tmp_path, capsys)
    out = tmp_path / "cmp"
    assert main(["compare", str(runs[0]), str(runs[1]), "--target", "0.25", "--out", str(out)]) == 0
    table = pd.read_csv(out / "compare.csv")
    assert table["run_id"].tolist() == [runs[0].name, runs[1].name]
    for run_dir, (_, row) in zip(runs[:2], table.iterrows()):
        metrics = pd.read_csv(run_dir / "metrics.csv")
        reached = metrics[metrics["mean_accuracy"] >= 0.25]
        assert row["final_acc"] == pytest.approx(metrics["mean_accuracy"].iloc[-1])
        assert row["max_acc"] == pytest.approx(metrics["mean_accuracy"].max())
        if len(reached):
            assert row["conv_rounds"] == reached["round"].iloc[0]
            assert row["time_to_target_s"] == pytest.approx(reached["sim_time_s"].iloc[0])
            assert row["energy_to_target_j"] == pytest.approx(reached["cumulative_energy_j"].iloc[0])
        else:
            assert np.isnan(row["conv_rounds"])
        assert row["algorithm"] == _config_of(run_dir)["algorithm"]["name"]
    assert (out / "compare.png").stat().st_size > 0 and "| run | algorithm |" in (out / "compare.md").read_text()

    sweep_dir = tmp_path / "results" / "sweeps" / "loop"
    capsys.readouterr()
    assert main(["compare", str(sweep_dir), "--target", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert "4 runs compared in" in printed and printed.split("Over seeds")[0].count("| dpsgd |") == 2
    # Without a target: the curves and the final figures, no to-target columns, the same final accuracies.
    assert main(["compare", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "plain")]) == 0
    plain = (tmp_path / "plain" / "compare.md").read_text()
    assert "| final acc | max acc |" in plain and "rounds to" not in plain
    untargeted = pd.read_csv(tmp_path / "plain" / "compare.csv")
    assert untargeted["final_acc"].tolist() == table["final_acc"].tolist() and untargeted["conv_rounds"].isna().all()


def test_compare_refuses_what_is_not_a_run_and_leaves_out_damaged_runs(tmp_path, capsys):
    runs = _sweep(tmp_path, capsys)
    assert main(["compare", str(tmp_path), "--target", "0.5"]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    assert main(["compare", str(runs[0]), "--target", "1.5"]) == 2
    (runs[0] / "links.csv").write_text("round,exchange\n")
    assert main(["compare", str(runs[0]), str(runs[1]), "--target", "0.5", "--out", str(tmp_path / "c")]) == 0
    assert f"leaving out {runs[0]}: links.csv has 0 rows" in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "c" / "compare.csv")["run_id"].tolist() == [runs[1].name]


def test_show_several_runs_or_a_sweep_one_line_each(tmp_path, capsys):
    runs = _sweep(tmp_path, capsys)
    assert main(["show", str(tmp_path / "results" / "sweeps" / "loop")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("done after 12 rounds; final accuracy" in line for line in lines)
    assert all("of intended messages delivered" in line and "energy" in line for line in lines)
    assert main(["show", str(runs[0]), str(runs[1])]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


@pytest.mark.parametrize("override, suggestion", [
    ("algorithm.name=dpsdg", "did you mean 'dpsgd'?"),
    ("network.link_model=random_grap", "did you mean 'random_graph'?"),
    ("network.densty=0.5", "did you mean 'density'?"),
    ("data.partiton=dirichlet", "did you mean 'partition'?"),
    ("evl_every=2", "did you mean 'eval_every'?"),
    ("network.transport=broadcst", "did you mean 'broadcast'?"),
])
def test_unknown_names_get_a_did_you_mean(tmp_path, capsys, override, suggestion):
    path = tmp_path / "run.toml"
    path.write_text('rounds = 2\ndevices = 4\n[data]\ndataset = "digits"\n[network]\nlink_model = "synthetic"\n')
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--set", override]) == 2
    message = capsys.readouterr().err
    assert message.rstrip().endswith(f"({suggestion})"), message


def test_the_catalogue_lists_text_values_and_whole_first_paragraphs(capsys):
    assert main(["algorithms"]) == 0
    text = capsys.readouterr().out
    assert "see /" not in text and "variant = 'algorithm1' one of algorithm1, eq6, receiver" in text
    assert "gossip = 'laplacian' one of laplacian, metropolis" in text
    detag = next(line for line in text.splitlines() if line.startswith("detag:"))
    assert detag.rstrip().endswith(")") or detag.rstrip().endswith(".")  # a sentence, not cut mid-way
    blocks = {block.split(":")[0]: block for block in text.split("\n\n")}
    assert "kind: asynchronous (schedules: async)" in blocks["gossip_learning"]
    assert "kind: synchronous (schedules: rounds, local_barrier, stale_synchronous)" in blocks["dpsgd"]
    assert "sends: at d = 1,000, per round: model (1000), 4,000 B to neighbours" in blocks["dpsgd"]
    assert "up to 4,000 B to server (needs network.mode = \"online\")" in blocks["threshold_sgd"]
    # A bound named by a module constant is printed as its value; one naming another field stays a name.
    assert "MAX_EXCHANGES_PER_ROUND" not in text and "gossip_steps_max = 4        integer in [1, 64]" in text
    assert "integer in [0, gossip_steps_max]" in text


def test_the_example_notebook_runs_on_a_tiny_control_sweep(tmp_path, capsys, monkeypatch):
    """Executes the notebook in a real Jupyter kernel (nbclient, ipykernel: the notebook extra), as a reader
    would; skipped where the extra is not installed."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    from pathlib import Path

    _sweep(tmp_path, capsys, model="random_graph")
    notebook = nbformat.read(Path(__file__).resolve().parents[1] / "experiments" / "examples" / "read_a_sweep.ipynb",
                             as_version=4)
    monkeypatch.setenv("NSDML_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("NSDML_SWEEP", "loop")
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs)
    assert "4 runs, 4 finished" in printed
    assert (tmp_path / "results" / "sweeps" / "loop" / "notebook_comparison.png").stat().st_size > 0


def test_eval_every_s_evaluates_when_the_simulated_clock_passes_its_multiples(tmp_path, capsys):
    path = tmp_path / "timed.toml"
    path.write_text('rounds = 30\ndevices = 5\neval_every = 1000\neval_every_s = 5.0\n[data]\ndataset = "digits"\n'
                    '[network]\nlink_model = "synthetic"\n')
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "--quiet"]) == 0
    (run_dir,) = run_dirs(tmp_path / "r")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    clock = metrics["sim_time_s"].to_numpy()
    expected = [r == 0 or r == 30 or np.floor(clock[r] / 5.0) > np.floor(clock[r - 1] / 5.0) for r in range(31)]
    assert metrics["mean_accuracy"].notna().tolist() == expected
    assert 3 < sum(expected) < 31  # some rounds evaluated, not all
    assert metrics["local_steps"].tolist() == list(range(31))  # D-PSGD: one local step a round


def test_ls_lists_every_run_and_finds_runs_by_their_settings(tmp_path, capsys):
    runs = _sweep(tmp_path, capsys)
    results = str(tmp_path / "results")
    assert main(["ls", "--results", results]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split(":")[0] for line in lines) == sorted(run.name for run in runs)
    assert all("done; algorithm " in line and "final accuracy" in line for line in lines)
    for run in runs:  # each run found by its own seed and algorithm, and nothing else
        config = _config_of(run)
        assert main(["ls", "--results", results, "--where", f"seed={config['seed']}", "--where",
                     f"algorithm.name={config['algorithm']['name']}"]) == 0
        found = capsys.readouterr().out.splitlines()
        assert [line.split(":")[0] for line in found] == [run.name]
    assert main(["ls", "--results", results, "--where", "network.density=0.99"]) == 0
    assert capsys.readouterr().out.startswith("no run under")
    (runs[0] / "config.toml").write_text("rounds = {")  # damaged: still listed, as such
    assert main(["ls", "--results", results]) == 0
    assert f"{runs[0].name}: status done; config.toml cannot be read" in capsys.readouterr().out
    assert main(["ls", "--results", results, "--where", "density"]) == 2
    assert "--where: 'density' is not FIELD=VALUE" in capsys.readouterr().err


def test_compare_shows_the_field_that_differs_and_aggregates_the_seeds(tmp_path, capsys):
    from experiments.analysis.statistics import mean_interval, shown
    from experiments.run.sweep import expand_sweep, run_sweep

    raw = {"rounds": 3, "devices": 5, "seed": [0, 1], "data": {"dataset": "digits"},
           "network": {"link_model": "ideal"},
           "sweep": {"name": "pair", "cases": [{"network": {"schedule": "rounds"}},
                                               {"network": {"schedule": "local_barrier"}}]}}
    summary = run_sweep(expand_sweep(raw), tmp_path / "results", tmp_path / "cache", quiet=True)
    assert main(["compare", str(tmp_path / "results" / "sweeps" / "pair"), "--out", str(tmp_path / "c")]) == 0
    text = (tmp_path / "c" / "compare.md").read_text()
    runs, grouped = text.split("Over seeds")
    assert "| network.schedule |" in runs.splitlines()[0] and "| local_barrier |" in runs and "| rounds |" in runs
    barrier = summary[summary["network.schedule"] == "local_barrier"]["final_acc"]
    (line,) = [row for row in grouped.splitlines() if "| local_barrier |" in row]
    assert f"| 2 | {shown(*mean_interval(barrier), 4)} |" in line
    legend = pd.read_csv(tmp_path / "c" / "compare.csv")
    assert set(legend["network.schedule"]) == {"rounds", "local_barrier"}
