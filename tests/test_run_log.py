"""Every run writes run.log (also inside a sweep's worker processes); -v adds a line per round; the TensorBoard
export read back with TensorBoard's own event reader equals metrics.csv."""

import math

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.cli import main
from helpers import run_dirs

RUN = 'rounds = 3\ndevices = 4\neval_every = 2\n[data]\ndataset = "digits"\n[network]\nlink_model = "ideal"\n'
SWEEP = RUN + '[sweep]\nname = "logged"\n'


def _args(tmp_path):
    return ["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache")]


def test_a_run_writes_run_log_and_verbose_adds_a_line_per_round(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(RUN)
    assert main(["run", str(tmp_path / "run.toml"), *_args(tmp_path), "-q"]) == 0
    assert "[nsdml] link trace" not in capsys.readouterr().err  # -q: info lines only in run.log
    (run_dir,) = run_dirs(tmp_path / "results")
    log = (run_dir / "run.log").read_text()
    assert "INFO nsdml.run: link trace: ideal, 4 devices" in log and "DEBUG" not in log
    (tmp_path / "run.toml").write_text(RUN.replace("rounds = 3", "rounds = 2"))
    assert main(["run", str(tmp_path / "run.toml"), *_args(tmp_path), "-v", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "[nsdml] round 1: clock" in err and "mean accuracy not evaluated" in err  # eval_every = 2
    (verbose,) = [d for d in run_dirs(tmp_path / "results") if d != run_dir]
    assert "DEBUG nsdml.run: round 2: clock" in (verbose / "run.log").read_text()
    assert main(["run", str(tmp_path / "run.toml"), *_args(tmp_path), "-q"]) == 0  # -v ends with its command
    assert "round 1" not in capsys.readouterr().err


def test_a_sweeps_runs_write_their_run_log_from_worker_processes(tmp_path):
    (tmp_path / "sweep.toml").write_text(SWEEP.replace("rounds = 3", "seed = [0, 1]\nrounds = 3"))
    assert main(["sweep", str(tmp_path / "sweep.toml"), *_args(tmp_path), "--quiet", "--workers", "2"]) == 0
    runs = [d for d in run_dirs(tmp_path / "results") if d.name != "sweeps"]
    assert len(runs) == 2
    for run_dir in runs:
        assert "INFO nsdml.run: link trace" in (run_dir / "run.log").read_text()


def test_the_tensorboard_export_read_back_equals_metrics_csv(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(RUN)
    assert main(["run", str(tmp_path / "run.toml"), *_args(tmp_path), "-q"]) == 0
    (run_dir,) = run_dirs(tmp_path / "results")
    for _ in range(2):  # a second export replaces the first: no duplicated points
        assert main(["tensorboard", str(run_dir), "--out", str(tmp_path / "tb")]) == 0
    events = EventAccumulator(str(tmp_path / "tb" / run_dir.name))
    events.Reload()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    for column in metrics.columns.drop("round"):
        expected = metrics[["round", column]].dropna()
        scalars = events.Scalars(column) if len(expected) else []
        assert [s.step for s in scalars] == expected["round"].tolist(), column
        assert [s.value for s in scalars] == pytest.approx(expected[column].tolist(), rel=1e-6, abs=1e-30), column
    evaluated = metrics.dropna(subset=["mean_accuracy"])
    by_time = events.Scalars("mean_accuracy/by_sim_ms")
    assert [s.step for s in by_time] == [round(t * 1000) for t in evaluated["sim_time_s"]]
    assert [s.value for s in events.Scalars("hparam/final_acc")] == pytest.approx([evaluated["mean_accuracy"].iloc[-1]])
    assert not math.isnan(events.Scalars("hparam/max_acc")[0].value)
    assert main(["tensorboard", str(tmp_path), "--out", str(tmp_path / "tb")]) == 2
    assert "neither a run directory" in capsys.readouterr().err


def test_a_ray_address_without_ray_installed_exits_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    (tmp_path / "sweep.toml").write_text(SWEEP)
    assert main(["sweep", str(tmp_path / "sweep.toml"), *_args(tmp_path), "--ray-address", "auto", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--ray-address: Ray is not installed" in err and "[ray]" in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_an_unplaced_link_model_does_not_report_an_idle_density_of_one(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(RUN.replace('"ideal"', '"random_graph"'))
    assert main(["run", str(tmp_path / "run.toml"), *_args(tmp_path), "--quiet"]) == 0
    (run_dir,) = run_dirs(tmp_path / "results")
    log = (run_dir / "run.log").read_text()
    assert "no placement, so every pair may connect" in log and "idle density" not in log


def test_an_asynchronous_run_reports_evaluation_periods_not_rounds(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(RUN.replace('[network]\n', '[algorithm]\nname = "async_dpsgd"\n[network]\n'
                                                   'schedule = "async"\n').replace("eval_every = 2\n", ""))
    assert main(["run", str(tmp_path / "run.toml"), *_args(tmp_path), "-q"]) == 0
    assert "done after 3 evaluation periods (rounds = periods of" in capsys.readouterr().out
