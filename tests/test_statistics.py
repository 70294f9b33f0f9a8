"""95 % intervals and paired differences in sweep tables, against numbers computed by hand."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from experiments.analysis.statistics import mean_interval, paired_differences, shown
from experiments.run.sweep import aggregate, markdown_table

T_975_2 = 4.302652729911275  # Student t, 0.975 quantile, 2 degrees of freedom (tables)


def _summary(seeds, rows):
    """rows: algorithm -> list of (max_acc, final_acc, conv_rounds, seconds, joules) per seed."""
    records = []
    for algorithm, values in rows.items():
        for seed, (max_acc, final_acc, rounds, seconds, joules) in zip(seeds, values):
            records.append({"algorithm.name": algorithm, "seed": seed, "status": "done", "run_id": f"{algorithm}{seed}",
                            "max_acc": max_acc, "final_acc": final_acc, "conv_rounds": rounds,
                            "steps_to_target": rounds,  # one local step a round
                            "time_to_target_s": seconds, "energy_to_target_j": joules, "bytes_sent": 1e6})
    return pd.DataFrame(records)


def test_mean_interval_is_the_t_interval():
    mean, half = mean_interval([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82)
    assert half == pytest.approx(T_975_2 * 0.02 / math.sqrt(3))  # s = 0.02
    assert math.isnan(mean_interval([0.7])[1]) and shown(0.7, math.nan, 4) == "0.7000 ± n/a"


NAN = float("nan")
THREE = _summary([0, 1, 2], {
    "dpsgd": [(0.80, 0.79, 50, 75.0, 1500.0), (0.82, 0.80, 60, 90.0, 1800.0), (0.84, 0.83, 70, 105.0, 2100.0)],
    "hyperprism": [(0.81, 0.80, 40, 60.0, 1200.0), (0.85, 0.83, NAN, NAN, NAN), (0.86, 0.85, 50, 75.0, 1500.0)],
})


def test_a_three_seed_table_shows_intervals_and_paired_differences():
    by = ["algorithm.name"]
    text = markdown_table(aggregate(THREE, by), by, 0.8, ["ns3"], paired_differences(THREE, by))
    # dpsgd: max acc 0.82 ± 4.3027 * 0.02 / sqrt 3 = 0.0497; final acc (0.79, 0.80, 0.83): s = 0.02082,
    # 0.8067 ± 0.0517; rounds 60 ± 4.3027 * 10 / sqrt 3 = 24.8 (3/3); seconds 90 ± 4.3027 * 15 / sqrt 3 = 37.3.
    assert ("| dpsgd | 3 | 0.8200 ± 0.0497 | 0.8067 ± 0.0517 | 60.0 ± 24.8 (3/3) | 60.0 ± 24.8 (3/3) "
            "| 90.0 ± 37.3 (3/3) |") in text
    # hyperprism reached the target in 2 of 3 seeds: its mean over those, no interval.
    # (max acc s = 0.02646 -> 0.0657; final acc s = 0.02517 -> 0.0625.)
    assert ("| hyperprism | 3 | 0.8400 ± 0.0657 | 0.8267 ± 0.0625 | 45.0 ± n/a (2/3) | 45.0 ± n/a (2/3) "
            "| 67.5 ± n/a (2/3) |") in text
    # Paired: final acc differences +0.01, +0.03, +0.02 -> +0.0200 ± 4.3027 * 0.01 / sqrt 3 = 0.0248 (3 pairs);
    # rounds where both reached: -10, -20 -> -15.0 ± 12.706 * 7.071 / sqrt 2 = 63.5 (2 pairs).
    row = next(line for line in text.splitlines() if line.startswith("| hyperprism − dpsgd |"))
    assert "+0.0200 ± 0.0248 (3)" in row and "-15.0 ± 63.5 (2)" in row
    assert "95 % Student t interval" in text


def test_a_one_seed_table_says_n_a_never_plus_minus_zero():
    one = _summary([0], {"dpsgd": [(0.8, 0.79, 50, 75.0, 1500.0)], "dsgt": [(0.7, 0.7, NAN, NAN, NAN)]})
    by = ["algorithm.name"]
    text = markdown_table(aggregate(one, by), by, 0.8, ["ns3"], paired_differences(one, by))
    assert "| dpsgd | 1 | 0.8000 ± n/a | 0.7900 ± n/a | 50.0 ± n/a (1/1) |" in text
    assert "| dsgt | 1 | 0.7000 ± n/a | 0.7000 ± n/a | — (0/1) |" in text
    assert "± 0.0000" not in text and "-0.1000 ± n/a (1)" in text


def test_a_real_three_seed_sweeps_table_holds_the_intervals_of_its_runs(tmp_path, capsys):
    from experiments.cli import main

    path = tmp_path / "three.toml"
    path.write_text('rounds = 8\ndevices = 4\nseed = [0, 1, 2]\n[sweep]\nname = "three"\ntarget_accuracy = 0.2\n'
                    '[data]\ndataset = "digits"\n[algorithm]\nname = ["dpsgd", "dsgt"]\n'
                    '[network]\nlink_model = "random_graph"\n')
    assert main(["sweep", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"),
                 "--quiet", "--workers", "1"]) == 0
    out = tmp_path / "r" / "sweeps" / "three"
    summary, text = pd.read_csv(out / "summary.csv"), (out / "table.md").read_text()
    for algorithm, group in summary.groupby("algorithm.name"):
        values = group["max_acc"].to_numpy()
        half = T_975_2 * values.std(ddof=1) / math.sqrt(3)
        assert f"| {algorithm} | 3 | {values.mean():.4f} ± {half:.4f} |" in text
    a = summary[summary["algorithm.name"] == "dpsgd"].set_index("seed")["final_acc"]
    b = summary[summary["algorithm.name"] == "dsgt"].set_index("seed")["final_acc"]
    diff = (b - a).to_numpy()
    assert f"{diff.mean():+.4f} ± {T_975_2 * diff.std(ddof=1) / math.sqrt(3):.4f} (3)" in text
    assert len(pd.read_csv(out / "paired.csv")) == 1


def test_a_reports_stamp_comes_from_its_runs_and_a_modified_tree_is_refused(tmp_path, monkeypatch, capsys):
    from experiments.campaigns import report
    from experiments.run.machine import machine_record
    from experiments.run.sweep import expand_sweep, run_sweep

    sweep = expand_sweep({"rounds": 2, "devices": 4, "seed": [0, 1], "sweep": {"name": "stamped"},
                          "data": {"dataset": "digits"}, "network": {"link_model": "random_graph"}})
    run_sweep(sweep, tmp_path / "r", tmp_path / "c", quiet=True)
    records = [json.loads((tmp_path / "r" / config.run_id / "run.json").read_text()) for _, config in sweep.runs]
    assert all(r["machine"] == machine_record() and r["code_commit"] for r in records)
    text = report.stamp([sweep], tmp_path / "r", "table-x")
    assert f"**Commit:** {records[0]['code_commit']};" in text
    assert f"{machine_record()['matmul_gflops']:.1f} GFLOP/s" in text
    tuning = expand_sweep({"rounds": 2, "devices": 4, "seed": 7, "sweep": {"name": "tuning"},
                           "data": {"dataset": "digits"}, "network": {"link_model": "random_graph"}})
    assert report.sweep_seeds([sweep, tuning]) == "stamped 0, 1; tuning 7"  # each sweep names its own seeds
    # A run recorded on another machine widens the stamp to a range: the stamp is the runs', not the writer's.
    other = tmp_path / "r" / sweep.runs[1][1].run_id / "run.json"
    edited = dict(records[1], machine={**records[1]["machine"], "matmul_gflops": 1.5})
    other.write_text(json.dumps(edited))
    assert "1.5-" in report.runs_machines([records[0], edited])
    monkeypatch.setattr(report, "code_commit", lambda: "abc1234 + uncommitted changes")
    assert report.main(["energy", "experiments/configs/energy_table.toml"]) == 2
    assert "uncommitted changes" in capsys.readouterr().err


def test_a_report_keeps_its_runs_per_seed_figures_beside_it(tmp_path, monkeypatch):
    from experiments.campaigns import report
    from experiments.run.sweep import expand_sweep, run_sweep

    sweep = expand_sweep({"rounds": 3, "devices": 4, "seed": [0, 1, 2], "sweep": {"name": "kept"},
                          "data": {"dataset": "digits"}, "algorithm": {"name": ["dpsgd", "dsgt"]},
                          "network": {"link_model": "random_graph", "compute_s_per_step": [0.05, 0.1]}})
    run_sweep(sweep, tmp_path / "r", tmp_path / "c", quiet=True)
    monkeypatch.setattr(report, "REPORTS", tmp_path / "reports")
    (tmp_path / "reports").mkdir()
    path = report.update_report("kept", [sweep], [], tmp_path / "r", "table-kept")
    runs = pd.read_csv(tmp_path / "reports" / "kept-runs.csv")
    assert len(runs) == 12 and sorted(runs["seed"].unique()) == [0, 1, 2]
    # each row maps back to its config: the main setting fields always, any other that differs too
    assert {"algorithm.lr", "network.schedule", "network.compute_model", "network.radio_sleep", "data.batch_size",
            "network.compute_s_per_step"} <= set(runs.columns)
    assert "network.phy_mode" not in runs  # equal for every run: not a column
    assert sorted(runs["network.compute_s_per_step"].unique()) == [0.05, 0.1]
    summary = pd.read_csv(tmp_path / "r" / "sweeps" / "kept" / "summary.csv")
    assert runs.set_index("run_id")["final_acc"].sort_index().equals(summary.set_index("run_id")["final_acc"].sort_index())
    assert "[kept-runs.csv](kept-runs.csv)" in path.read_text()


def test_holm_adjusts_a_family_of_p_values_as_computed_by_hand():
    from experiments.analysis.statistics import holm

    # sorted 0.01, 0.03, 0.04 of m = 3: 0.03, max(0.03, 0.06) = 0.06, max(0.06, 0.04) = 0.06; NaN untouched
    adjusted = holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3].tolist() == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped at 1


def test_paired_p_is_scipys_paired_t_test_and_the_table_adjusts_every_comparison_together():
    from scipy import stats

    from experiments.analysis.statistics import holm, paired_differences

    rows = []
    for algorithm, shift in (("a", 0.0), ("b", 0.05), ("c", 0.2)):
        for seed, noise in enumerate((0.01, -0.02, 0.03, 0.0)):
            rows.append({"algorithm.name": algorithm, "seed": seed, "status": "done",
                         "final_acc": 0.5 + shift + noise * (algorithm != "a"),
                         "max_acc": 0.6 + shift * (algorithm == "c")})
    summary = pd.DataFrame(rows)
    paired = paired_differences(summary, ["algorithm.name"], figures=("final_acc", "max_acc"))
    a, b = (summary[summary["algorithm.name"] == x]["final_acc"].to_numpy() for x in ("a", "b"))
    assert paired.loc[0, "final_acc_p"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
    family = paired[["final_acc_p", "max_acc_p"]].to_numpy().ravel()
    # max_acc has no spread: b - a is 0 on every seed (NaN, not tested), c - a 0.2 on every seed (the t
    # statistic's limit is infinite: p 0, tested)
    assert np.isnan(paired.loc[0, "max_acc_p"]) and paired.loc[1, "max_acc_p"] == 0.0
    assert paired[["final_acc_p_holm", "max_acc_p_holm"]].to_numpy().ravel().tolist() == \
        pytest.approx(holm(family).tolist(), nan_ok=True)
