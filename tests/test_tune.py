"""`nsdml tune`: the project's one tuning protocol (held-out seeds, the evaluation's horizon and target, a grid
widened past whichever edge holds the choice until it is interior or a bound stops it)."""

import tomllib

import pandas as pd
import pytest

from experiments.analysis.tuning import check_rates, grid_rate, starting_grid, tuning_table, widening
from experiments.cli import main

CONFIG = """seed = [0, 1]
rounds = 5
devices = 4
[sweep]
name = "tq"
target_accuracy = 0.4
[data]
dataset = "digits"
alpha = 1.0
[network]
link_model = "ideal"
"""


def _table(rounds_by_rate: dict[float, float], final_by_rate: dict[float, float] | None = None) -> pd.DataFrame:
    rows = [{"algorithm.name": "a", "algorithm.lr": rate, "status": "done", "run_id": f"r{rate}",
             "conv_rounds": reached, "final_acc": (final_by_rate or {}).get(rate, 0.5)}
            for rate, reached in rounds_by_rate.items()]
    return tuning_table(pd.DataFrame(rows), rounds=10)


def test_the_grid_starts_around_the_default_and_widens_past_the_edge_holding_the_choice():
    assert starting_grid(0.1) == [0.01, 0.0316, 0.1, 0.316, 1.0]
    assert starting_grid(30.0) == [3.0, 9.49, 30.0, 94.9]  # 300 is beyond the largest lr allowed
    interior = _table({0.01: 9, 0.1: 4, 1.0: 6})
    assert widening(interior, {"a": 0.1}) == ({}, {"a": "interior"})
    upper = _table({0.01: 9, 0.1: 6, 1.0: 3})
    assert widening(upper, {"a": 0.1}) == ({"a": grid_rate(10 ** 0.5)}, {"a": "widening"})
    lower = _table({0.0316: 2, 0.1: 6, 0.316: float("nan")})  # never reached: counted as rounds + 1
    assert widening(lower, {"a": 0.1})[0] == {"a": 0.01}
    at_bound = _table({0.0001: 2, 0.000316: 5, 0.001: 8})
    assert widening(at_bound, {"a": 0.001}) == ({}, {"a": "at the lower bound 0.0001"})
    nobody = _table({0.01: float("nan"), 0.1: float("nan"), 1.0: float("nan")}, {0.01: 0.2, 0.1: 0.4, 1.0: 0.3})
    assert widening(nobody, {"a": 0.1}) == ({}, {"a": "interior (no rate reached the target: chosen by final "
                                                  "accuracy)"})


def test_tune_on_a_control_returns_an_interior_rate_or_names_the_bound_and_its_sweep_runs(tmp_path, capsys):
    config = tmp_path / "tq.toml"
    config.write_text(CONFIG)
    where = ["--results", str(tmp_path / "results"), "--cache", str(tmp_path / "cache"), "--quiet", "--workers", "1"]
    assert main(["tune", str(config), "--algorithms", "hyperprism", "--seeds", "900", *where]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "results" / "tune" / "tq"
    table = pd.read_csv(folder / "tuning.csv")
    (chosen,) = table.loc[table["chosen"], "algorithm.lr"]
    rates = sorted(table["algorithm.lr"])
    assert rates[0] < chosen < rates[-1] or "bound" in out
    assert f"hyperprism lr {chosen:g}: interior" in out or "bound" in out
    assert set(table["settings"]) == {1}  # seed 900 only: the config's seeds 0 and 1 are not used to tune
    overrides = tomllib.loads((folder / "overrides.toml").read_text())
    assert overrides == {"algorithm_overrides": {"hyperprism": {"lr": chosen}}}
    assert main(["sweep", str(folder / "tuned.toml"), *where]) == 0
    evaluated = pd.read_csv(tmp_path / "results" / "sweeps" / "tq-tuned" / "summary.csv")
    assert sorted(evaluated["seed"]) == [0, 1] and (evaluated["status"] == "done").all()
    check_rates(evaluated, {"hyperprism": chosen}, "tq-tuned")  # raises if the sweep drifted from the tuning
    capsys.readouterr()
    assert main(["tune", str(config), "--algorithms", "hyperprism", "--seeds", "900", *where[:-3]]) == 0
    assert "0 to run" in capsys.readouterr().err  # the second call reuses every run
    assert main(["sweep", str(folder / "tuning.toml"), *where[:-3]]) == 0  # the tuning's runs, as a sweep file
    assert "0 to run" in capsys.readouterr().err
    listed = pd.read_csv(tmp_path / "results" / "sweeps" / "tq-tune" / "summary.csv")
    assert sorted(listed["algorithm.lr"]) == rates and set(listed["seed"]) == {900}


@pytest.mark.parametrize("arguments, message", [
    (["--algorithms", "dpsgd", "--seeds", "1"], "--seeds: 1 also among the config's seeds"),
    (["--algorithms", "dpsgd", "--seeds", "x"], "--seeds: 'x' is not allowed"),
    (["--algorithms", "nonsense", "--seeds", "900"], "--algorithms: 'nonsense'"),
    (["--algorithms", "dpsgd", "--seeds", "900", "--target", "1.5"], "--target: 1.5 is not allowed"),
])
def test_tune_refuses_bad_input_naming_the_field(tmp_path, capsys, arguments, message):
    config = tmp_path / "tq.toml"
    config.write_text(CONFIG)
    assert main(["tune", str(config), *arguments, "--results", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_tune_needs_a_target_chosen_before_the_runs(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.replace('[sweep]\nname = "tq"\ntarget_accuracy = 0.4\n', ""))
    assert main(["tune", str(config), "--algorithms", "dpsgd", "--seeds", "900", "--results", str(tmp_path / "r")]) == 2
    assert "--target:" in capsys.readouterr().err


def test_tune_keeps_an_algorithms_other_hyperparameters_and_sets_only_its_rate(monkeypatch, tmp_path):
    """[algorithm_overrides.trimmed_mean] trim = 3, lr = 5: the tuning runs trim 3 at every rate of its grid
    (the override's lr is the tuning's to set); an override of an algorithm not tuned is left out."""
    from experiments.run import tune as tuning

    captured = {}

    def stop(sweep, *args, **kwargs):
        captured["sweep"] = sweep
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "run_sweep", stop)
    raw = {"seed": [1], "rounds": 3, "devices": 8, "data": {"dataset": "digits"}, "network": {"link_model": "ideal"},
           "sweep": {"name": "fixed", "target_accuracy": 0.5},
           "algorithm_overrides": {"trimmed_mean": {"trim": 3, "lr": 5.0}, "krum": {"byzantine": 1}}}
    with pytest.raises(KeyboardInterrupt):
        tuning.tune(raw, ["trimmed_mean", "dpsgd"], [0], None, tmp_path / "r", tmp_path / "c")
    runs = [config.algorithm for _, config in captured["sweep"].runs]
    trimmed = [dict(a.hyperparameters) for a in runs if a.name == "trimmed_mean"]
    assert {h["trim"] for h in trimmed} == {3} and sorted(h["lr"] for h in trimmed) == [0.01, 0.0316, 0.1, 0.316, 1.0]
    assert all("trim" not in dict(a.hyperparameters) for a in runs if a.name == "dpsgd")
