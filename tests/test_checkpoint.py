"""Checkpoints: a run SIGKILLed at a random round resumes from its last checkpoint and ends byte for byte as
an uninterrupted run; the algorithm's state round-trips as data (no pickle)."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.run import checkpoint
from experiments.cli import main
from experiments.config import parse_config
from experiments.run.runner import run_experiment
from helpers import run_dirs
from learner.algorithms.registry import build_algorithm

ROOT = Path(__file__).resolve().parents[1]
RESULT_FILES = ("metrics.csv", "links.csv", "device_metrics.csv", "devices.csv", "positions.csv", "config.toml")
EVERY = 7

ALGORITHMS = {  # name -> extra config lines; at least five, HyperPrism adaptive and a server algorithm among them
    "dpsgd": "",
    "hyperprism": "",
    "dsgt": "",
    "choco_sgd": "",
    "mudag": "",
    "fedavg": 'topology = "access_point"',
}


def _config_text(algorithm: str, rounds: int, network: str = "") -> str:
    return (f'name = "ckpt"\nrounds = {rounds}\ndevices = 8\ncheckpoint_every = {EVERY}\n'
            f'[data]\ndataset = "digits"\nbatch_size = 64\n[model]\nname = "mlp"\nhidden = 300\n'
            f'[algorithm]\nname = "{algorithm}"\n[network]\nlink_model = "synthetic"\n{network}\n')


def _rows(path: Path) -> int:
    try:
        return max(path.read_bytes().count(b"\n") - 1, 0)
    except OSError:
        return 0


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_a_run_killed_at_a_random_round_resumes_from_its_checkpoint_with_identical_csvs(tmp_path, capsys, algorithm):
    rounds = 160
    config = tmp_path / "run.toml"
    config.write_text(_config_text(algorithm, rounds, ALGORITHMS[algorithm]))
    cache = tmp_path / "cache"
    assert main(["run", str(config), "--results", str(tmp_path / "whole"), "--cache", str(cache), "--quiet"]) == 0
    (whole,) = run_dirs(tmp_path / "whole")
    assert not (whole / checkpoint.FILE).exists()  # a finished run keeps no checkpoint

    kill_after = random.Random(algorithm).randint(EVERY + 1, rounds // 2)
    process = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", str(config), "--results",
                                str(tmp_path / "killed"), "--cache", str(cache), "--quiet"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / whole.name / "metrics.csv"
    deadline = time.monotonic() + 120
    while _rows(metrics) < kill_after + 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = tmp_path / "killed" / whole.name
    record = json.loads((killed / "run.json").read_text())
    assert record["status"] == "running", "the run finished before the kill: make it longer"
    done_before_kill = record["rounds_completed"] if _rows(metrics) == 0 else _rows(metrics) - 1
    assert done_before_kill >= EVERY and (killed / checkpoint.FILE).is_file()

    assert main(["run", str(config), "--results", str(tmp_path / "killed"), "--cache", str(cache), "--quiet"]) == 0
    log = capsys.readouterr().err
    resumed_at = (done_before_kill // EVERY) * EVERY
    assert f"resuming {whole.name} from its checkpoint at round {resumed_at}" in log, log
    for name in RESULT_FILES:
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    final = json.loads((killed / "run.json").read_text())
    assert final["status"] == "done" and final["resumed_from_round"] == resumed_at
    assert not (killed / checkpoint.FILE).exists()


def test_the_checkpoint_interval_is_not_part_of_the_run_id():
    base = {"rounds": 3, "devices": 4, "data": {"dataset": "digits"}, "network": {"link_model": "synthetic"}}
    assert parse_config(base).run_id == parse_config({**base, "checkpoint_every": 2}).run_id


def test_a_checkpoint_by_other_code_or_a_changed_csv_restarts_from_round_0(tmp_path):
    config = parse_config({"rounds": 12, "devices": 4, "checkpoint_every": 5, "data": {"dataset": "digits"},
                           "network": {"link_model": "synthetic"}})
    run_experiment(config, tmp_path / "results", tmp_path / "cache", log=lambda m: None)
    run_dir = tmp_path / "results" / config.run_id
    whole = (run_dir / "metrics.csv").read_bytes()
    # Rebuild the state an interrupted run would have left at round 10, then damage it two ways.
    record = json.loads((run_dir / "run.json").read_text())
    for tamper, expected in (("fingerprint", "another code fingerprint"), ("csv", "no longer starts with")):
        lines = whole.decode().splitlines(keepends=True)
        (run_dir / "metrics.csv").write_text("".join(lines[:11]))
        marks = checkpoint.csv_marks(run_dir)
        algorithm = config.algorithm.instance
        x = torch.zeros(4, config.model_dim)
        saved = checkpoint.Checkpoint(10, 1.0, 10, x, algorithm.init(x), torch.Generator().get_state(),
                                      {"alive": [True] * 4, "spent_j": [0.0] * 4, "died_round": [None] * 4},
                                      [], marks)
        identity = {"run_id": config.run_id, "code_fingerprint": record["code_fingerprint"]}
        if tamper == "fingerprint":
            identity["code_fingerprint"] = "0" * 16
        checkpoint.save(run_dir, saved, identity)
        if tamper == "csv":
            (run_dir / "metrics.csv").write_text("round\n" + "".join(lines[1:11]))
        (run_dir / "run.json").write_text(json.dumps({**record, "status": "running"}))
        messages = []
        run_experiment(config, tmp_path / "results", tmp_path / "cache", log=messages.append)
        assert any("not resuming" in m and expected in m for m in messages), messages
        assert (run_dir / "metrics.csv").read_bytes() == whole


class _Opaque:
    pass


def test_state_round_trips_as_data_and_foreign_classes_are_refused(tmp_path):
    algorithm = build_algorithm("hyperprism")
    x = torch.randn(5, 30)
    state = algorithm.init(x, seed=3)
    saved = checkpoint.Checkpoint(4, 2.5, 4, x, state, torch.Generator().manual_seed(1).get_state(),
                                  {"alive": [True] * 5, "spent_j": [0.1] * 5, "died_round": [None] * 5},
                                  [{"round": 0, "mean_accuracy": float("nan")}], {})
    checkpoint.save(tmp_path, saved, {"run_id": "r"})
    loaded = checkpoint.load(tmp_path, {"run_id": "r"}, algorithm)
    assert type(loaded.state) is type(state)
    for name, before, after in zip(state._fields, state, loaded.state):
        for b, a in zip(before if isinstance(before, tuple) else [before], after if isinstance(after, tuple) else [after]):
            assert (b is None and a is None) or (torch.equal(a, b) and a.dtype == b.dtype), name
    assert torch.equal(loaded.x, x) and loaded.round == 4 and loaded.meter["spent_j"] == [0.1] * 5
    with pytest.raises(checkpoint.CheckpointError, match="cannot be stored as data"):
        checkpoint.save(tmp_path, checkpoint.Checkpoint(1, 0.0, 0, x, {"net": _Opaque()}, x, {}, [], {}), {})
    # A NamedTuple the algorithm does not use is not rebuilt from a file.
    with pytest.raises(checkpoint.CheckpointError, match="not a class of this algorithm"):
        checkpoint.load(tmp_path, {"run_id": "r"}, build_algorithm("dpsgd"))
