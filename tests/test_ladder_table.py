"""The ablation ladder's table: the tuning rule, the refusal of untuned rates, the rung-to-rung differences and
the bytes to the target, against numbers computed by hand."""

import math

import pandas as pd
import pytest

from experiments.analysis.tuning import TuningError
from experiments.campaigns.ladder_table import (check_rates, chosen_rates, differences_markdown, ranking,
                                      rung_differences, settings_markdown, settings_table, tuning_markdown,
                                      tuning_table, with_air_to_target)

NAN = math.nan
T_975_2 = 4.302652729911275  # Student t, 0.975 quantile, 2 degrees of freedom


def _tuning_runs(rows):
    """rows: (algorithm, lr, link model, conv_rounds, final_acc)."""
    return pd.DataFrame([{"algorithm.name": a, "algorithm.lr": lr, "network.link_model": link, "conv_rounds": rounds,
                          "final_acc": acc, "status": "done", "run_id": f"{a}-{lr}-{link}"}
                         for a, lr, link, rounds, acc in rows])


def test_the_tuning_rule_counts_a_rung_that_never_reached_the_target_as_rounds_plus_one():
    runs = _tuning_runs([
        ("dpsgd", 0.1, "ideal", 30, 0.7), ("dpsgd", 0.1, "ns3", NAN, 0.5),    # (30 + 81) / 2 = 55.5
        ("dpsgd", 0.3, "ideal", 50, 0.7), ("dpsgd", 0.3, "ns3", 60, 0.65),    # 55.0: chosen
        ("dpsgd", 1.0, "ideal", 40, 0.8), ("dpsgd", 1.0, "ns3", 70, 0.66),    # 55.0, higher final acc: chosen
        ("dsgt", 0.1, "ideal", 20, 0.7), ("dsgt", 0.1, "ns3", 20, 0.7)])
    table = tuning_table(runs, rounds=80)
    assert table.loc[(table["algorithm.name"] == "dpsgd") & (table["algorithm.lr"] == 0.1), "mean_rounds"].item() == 55.5
    assert chosen_rates(table) == {"dpsgd": 1.0, "dsgt": 0.1}
    text = tuning_markdown(table)
    assert "| D-PSGD | 55.5 (1/2) | 55.0 (2/2) | **55.0 (2/2)** | 1 (grid edge) |" in text
    assert "| DSGT | **20.0 (2/2)** | — | — | 0.1 (grid edge) |" in text


def test_an_evaluation_at_an_untuned_rate_is_refused_naming_the_field():
    evaluation = pd.DataFrame({"algorithm.name": ["dpsgd", "dpsgd", "dsgt"], "algorithm.lr": [0.3, 0.3, 0.1]})
    check_rates(evaluation, {"dpsgd": 0.3, "dsgt": 0.1}, "ladder")
    with pytest.raises(TuningError, match=r"algorithm_overrides\.dpsgd\.lr: sweep 'ladder' uses 0\.3; the tuning chose 1"):
        check_rates(evaluation, {"dpsgd": 1.0, "dsgt": 0.1}, "ladder")
    with pytest.raises(TuningError, match="algorithm.name: 'dsgt'.*not tuned"):
        check_rates(evaluation, {"dpsgd": 0.3}, "ladder")


def _ladder_runs():
    """Three seeds of D-PSGD on the ideal and the random-graph rungs at one density."""
    rows = []
    for link, finals, rounds, seconds in (("ns3_ideal", (0.70, 0.72, 0.74), (20, 30, 40), (10.0, 15.0, 20.0)),
                                           ("ns3_random_graph", (0.66, 0.70, 0.71), (30, 35, NAN), (14.0, 18.0, NAN))):
        for seed, final, conv, sec in zip((1, 2, 3), finals, rounds, seconds):
            rows.append({"network.density": 0.5, "algorithm.name": "dpsgd", "network.link_model": link, "seed": seed,
                         "status": "done", "final_acc": final, "conv_rounds": conv, "steps_to_target": conv,
                         "time_to_target_s": sec, "energy_to_target_j": 2 * sec,
                         "air_to_target_mb": sec / 10, "run_id": f"{link}{seed}"})
    return pd.DataFrame(rows)


def test_a_rung_minus_the_rung_below_is_paired_seed_by_seed():
    paired = rung_differences(_ladder_runs())
    row = paired[(paired["algorithm"] == "ns3_random_graph") & (paired["reference"] == "ns3_ideal")].iloc[0]
    # final acc differences -0.04, -0.02, -0.03: mean -0.03, s = 0.01 -> half 4.3027 * 0.01 / sqrt 3 = 0.02484
    assert row["final_acc_diff"] == pytest.approx(-0.03)
    assert row["final_acc_half"] == pytest.approx(T_975_2 * 0.01 / math.sqrt(3))
    # rounds where both reached: +10, +5 (seed 3 never reached on the random graph) -> +7.5, 2 pairs
    assert row["conv_rounds_diff"] == pytest.approx(7.5) and row["conv_rounds_pairs"] == 2
    text = differences_markdown(paired)
    assert "| 0.5 | D-PSGD | random graph − ideal | 3 | -0.030 ± 0.025 | +7.5 ± 31.8 (2) |" in text


def test_the_settings_table_gives_an_interval_to_the_target_only_when_every_seed_reached_it():
    table = settings_table(_ladder_runs())
    text = settings_markdown(table, 0.6)
    # ideal: rounds 20, 30, 40 -> 30.0 ± 4.3027 * 10 / sqrt 3 = 24.8; seconds 15.0 ± 12.4
    assert "| 0.5 | D-PSGD | ideal | 0.720 ± 0.050 | 30.0 ± 24.8 (3/3) | 30.0 ± 24.8 (3/3) | 2 ± 1 (3/3) |" in text
    # random graph: final acc 0.66, 0.70, 0.71 -> s = sqrt(0.0014 / 2) = 0.02646 -> 0.066; rounds in 2 of 3 seeds
    assert "| 0.5 | D-PSGD | random graph | 0.690 ± 0.066 | 32.5 ± n/a (2/3) |" in text
    assert ranking(table).iloc[0]["order"] == "D-PSGD"
    assert ranking(table).iloc[1]["by_time"] == "D-PSGD (2/3)"  # the random graph: not every seed reached it


def test_megabytes_on_air_to_the_target_sum_every_exchange_up_to_the_round_that_reached_it(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    pd.DataFrame({"round": [1, 1, 2, 2, 3], "bytes_on_air": [1e6, 2e6, 3e6, 4e6, 5e6]}).to_csv(run / "links.csv")
    summary = pd.DataFrame({"run_id": ["r", "r"], "status": ["done", "done"], "conv_rounds": [2, NAN]})
    assert with_air_to_target(summary, tmp_path)["air_to_target_mb"].tolist()[0] == 10.0
    assert math.isnan(with_air_to_target(summary, tmp_path)["air_to_target_mb"].tolist()[1])
