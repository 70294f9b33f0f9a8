"""The command line: bad input exits 2 naming the field, a good run writes its files deterministically.

Runs here use the explicitly named ``synthetic`` link model; the real ns-3
path is covered in test_ns3.py.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.config import load_config
from learner.algorithms.registry import ALGORITHMS, SYNCHRONOUS, names_of_kind
from learner.server import is_server
from helpers import run_dirs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "experiments" / "configs" / "default.toml"

SMALL = """
name = "small"
seed = 3
rounds = 8
devices = 6

[data]
dataset = "digits"
alpha = 0.5

[algorithm]
name = "dpsgd"
lr = 0.2

[network]
link_model = "synthetic"
density = 0.6
"""


def _write(tmp_path, text, name="config.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(tmp_path, config_path, results="results"):
    return main(["run", str(config_path), "--results", str(tmp_path / results), "--cache", str(tmp_path / "cache")])


@pytest.mark.parametrize("text, field", [
    ("devices = -3", "devices"),
    ("devices = 2.5", "devices"),
    ('colour = "red"', "colour"),
    ("[network]\ndensity = 1.5", "network.density"),
    ("[network]\ndensity = 0.0", "network.density"),
    ("[network]\nspeed = 3", "network.speed"),
    ('[network]\nlink_model = "random"', "network.link_model"),
    ('[network]\nphy_mode = "OfdmRate7Mbps"', "network.phy_mode"),
    ('[algorithm]\nname = "magic"', "algorithm.name"),
    ('[algorithm]\nlr = "fast"', "algorithm.lr"),
    ("[algorithm]\nlr = -0.1", "algorithm.lr"),
    ("[data]\nalpha = 0", "data.alpha"),
    ('[data]\ndataset = "cifar"', "data.dataset"),
    ('[model]\nname = "resnet"', "model.name"),
    ("rounds = 0", "rounds"),
    ("eval_every = 0", "eval_every"),
    ("rounds = [", "not valid TOML"),
    ('[data]\ndataset = "mnist"\nroot = "/nonexistent/nsdml"', "/nonexistent/nsdml/MNIST/raw"),
    ('[data]\ndataset = "cifar10"\nroot = "/nonexistent/nsdml"', "/nonexistent/nsdml/cifar-10-batches-bin"),
    ('[model]\nname = "cnn"\nhidden = 0', "model.hidden"),
])
def test_bad_config_exits_2_naming_the_field_and_writes_nothing(tmp_path, capsys, text, field):
    code = _run(tmp_path, _write(tmp_path, text))
    assert code == 2
    message = capsys.readouterr().err
    assert "config error" in message and field in message
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert _run(tmp_path, tmp_path / "absent.toml") == 2
    assert "cannot be read" in capsys.readouterr().err


def test_default_config_is_valid_and_uses_real_ns3():
    config = load_config(DEFAULT)
    assert config.network.link_model == "ns3"
    assert config.devices == 20 and config.scenario.density == 0.5 and config.data.alpha == 0.1


def test_run_writes_all_files_a_rerun_reuses_the_run_and_another_results_root_the_trace(tmp_path, capsys):
    path = _write(tmp_path, SMALL)
    assert _run(tmp_path, path) == 0
    run_dir = run_dirs(tmp_path / "results")[0]
    for name in ("config.toml", "metrics.csv", "links.csv", "devices.csv", "accuracy.png", "run.json"):
        assert (run_dir / name).stat().st_size > 0
    first = (run_dir / "metrics.csv").read_text()
    assert len(first.splitlines()) == 1 + 9  # header + round 0 + 8 rounds
    assert "simulated new trace" in capsys.readouterr().err

    record = (run_dir / "run.json").read_text()
    assert _run(tmp_path, path) == 0  # the same code finished this run: nothing is computed or written
    assert "reused (finished earlier by the same code)" in capsys.readouterr().out
    assert (run_dir / "run.json").read_text() == record

    assert _run(tmp_path, path, results="other") == 0
    assert "reused cached trace" in capsys.readouterr().err
    assert (run_dirs(tmp_path / "other")[0] / "metrics.csv").read_text() == first
    # The written config reproduces the run id: it is the resolved config.
    assert load_config(run_dir / "config.toml").run_id == run_dir.name


def test_eval_every_leaves_unevaluated_rounds_empty_and_keeps_the_evaluated_ones(tmp_path):
    import pandas as pd

    every_round = _write(tmp_path, SMALL, "every.toml")
    sparse = _write(tmp_path, SMALL.replace("devices = 6", "devices = 6\neval_every = 3"), "sparse.toml")
    assert _run(tmp_path, every_round, "a") == 0
    assert _run(tmp_path, sparse, "b") == 0
    full = pd.read_csv(run_dirs(tmp_path / "a")[0] / "metrics.csv")
    thinned = pd.read_csv(run_dirs(tmp_path / "b")[0] / "metrics.csv")
    evaluated = thinned["mean_accuracy"].notna()
    assert thinned.loc[evaluated, "round"].tolist() == [0, 3, 6, 8]  # every 3rd round and the last one
    assert thinned.loc[~evaluated, ["test_loss", "consensus_distance"]].isna().all().all()
    # Skipping evaluation changes nothing else: training rows and the evaluated rounds are identical.
    pd.testing.assert_frame_equal(thinned[evaluated], full[evaluated])
    pd.testing.assert_series_equal(thinned["train_loss"], full["train_loss"])


def test_console_script_module_runs_as_a_process(tmp_path):
    path = _write(tmp_path, SMALL.replace("rounds = 8", "rounds = 2"))
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "run", str(path), "--results",
                           str(tmp_path / "r"), "--cache", str(tmp_path / "c")], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "final mean test accuracy" in done.stdout


# Variable-payload algorithms (threshold SGD) need network.mode = "online", i.e. real ns-3: they are run
# end to end by their own tests and by the esgd table, not over this offline synthetic trace.
OFFLINE_ALGORITHMS = [name for name in names_of_kind(SYNCHRONOUS)
                      if not any(message.per_sender for message in ALGORITHMS[name]().messages(10))]


@pytest.mark.parametrize("algorithm", OFFLINE_ALGORITHMS)
def test_every_algorithm_runs_end_to_end_with_the_cnn(tmp_path, capsys, algorithm):
    text = SMALL.replace('name = "dpsgd"\nlr = 0.2', f'name = "{algorithm}"\nlr = 0.05').replace(
        "rounds = 8", "rounds = 3") + '\n[model]\nname = "cnn"\nhidden = 8\n'
    if is_server(ALGORITHMS[algorithm]):  # through the access point
        text = text.replace("[network]\n", '[network]\ntopology = "access_point"\n')
    assert _run(tmp_path, _write(tmp_path, text)) == 0
    run_dir = run_dirs(tmp_path / "results")[0]
    assert '"status": "done"' in (run_dir / "run.json").read_text()
    links = (run_dir / "links.csv").read_text().splitlines()
    assert len(links) > 1  # every exchange the algorithm used is in links.csv


def test_progress_piped_to_a_log_is_a_few_lines_not_a_line_per_round(tmp_path):
    path = _write(tmp_path, SMALL.replace("rounds = 8", "rounds = 200"))
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "run", str(path), "--results",
                           str(tmp_path / "r"), "--cache", str(tmp_path / "c")], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    updates = [line for line in done.stderr.replace("\r", "\n").splitlines() if "round" in line and "%" in line]
    assert 1 <= len(updates) <= 21, updates  # at most one every 5 %, never one per round
