"""DeTAG's table (experiments/campaigns/detag_table.py): censored paired differences against hand-computed cases,
bytes to the target from a run's links.csv, and each setting held to its own tuning."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.analysis.tuning import TuningError
from experiments.campaigns import detag_table


def runs_of(rows: list[dict]) -> pd.DataFrame:
    base = {"sweep": "detag-paper", "data.shuffled_fraction": 0.0, "spectral_gap": 0.5, "status": "done",
            "algorithm.lr": 0.1, "final_acc": 0.8, "rounds": 100, "local_steps": 200, "bytes_on_air": 4e6, "sim_time_s": 100.0, "energy_j": 50.0}
    frame = pd.DataFrame([{**base, **row} for row in rows])
    for figure, *_ in detag_table.CURRENCIES:
        frame[figure] = frame.get(figure, math.nan)
    return frame


def test_a_run_that_never_reached_the_target_counts_as_its_whole_budget_and_two_that_never_did_are_left_out():
    """DeTAG reaches the target on seeds 1 and 2 (10 and 12 gradients), D-PSGD on seed 2 only (30): seed 1 pairs
    D-PSGD's whole budget (100) with 10, seed 2 pairs 30 with 12, seed 3 (neither) says nothing."""
    runs = runs_of([
        {"algorithm.name": "detag", "seed": 1, "steps_to_target": 10.0, "final_acc": 0.85},
        {"algorithm.name": "detag", "seed": 2, "steps_to_target": 12.0, "final_acc": 0.86},
        {"algorithm.name": "detag", "seed": 3, "final_acc": 0.70},
        {"algorithm.name": "dpsgd", "seed": 1, "local_steps": 100, "final_acc": 0.75},
        {"algorithm.name": "dpsgd", "seed": 2, "local_steps": 100, "steps_to_target": 30.0, "final_acc": 0.81},
        {"algorithm.name": "dpsgd", "seed": 3, "local_steps": 100, "final_acc": 0.60},
    ])
    row = detag_table.paired(runs).iloc[0]
    assert row["algorithm"] == "dpsgd" and row["pairs"] == 3
    differences = np.array([100 - 10, 30 - 12])
    half = stats.t.ppf(0.975, 1) * differences.std(ddof=1) / math.sqrt(2)
    assert row["steps_to_target_diff"] == pytest.approx(54.0)
    assert row["steps_to_target_half"] == pytest.approx(half)
    assert row["steps_to_target_pairs"] == 2 and row["steps_to_target_one_censored"] == 1
    assert row["steps_to_target_p"] == pytest.approx(stats.ttest_1samp(differences, 0.0).pvalue)
    accuracy = np.array([0.75 - 0.85, 0.81 - 0.86, 0.60 - 0.70])  # every seed has a final accuracy
    assert row["final_acc_diff"] == pytest.approx(accuracy.mean()) and row["final_acc_pairs"] == 3
    assert row["time_to_target_s_pairs"] == 0  # nobody reached it in seconds (no figure given): nothing to say
    assert "54 ± 457 (2, 1 censored)" in detag_table.paired_markdown(detag_table.paired(runs), "detag-paper")


def test_bytes_are_shown_in_megabytes_and_holm_adjusts_every_p_of_the_report_together():
    runs = runs_of([{"algorithm.name": name, "seed": seed, "bytes_to_target": 1e6 * (seed + (3 if name == "sgp" else 0))
                     + 1e4 * seed ** 2, "steps_to_target": 5.0 + seed * (name == "sgp")}
                    for name in ("detag", "sgp") for seed in (1, 2, 3)])
    row = detag_table.paired(runs).iloc[0]
    assert row["bytes_to_target_diff"] == pytest.approx(3.0)  # MB
    p_values = [row[f"{figure}_p"] for figure in ("final_acc", *(f for f, *_ in detag_table.CURRENCIES))]
    known = sorted(p for p in p_values if p == p)
    assert row["steps_to_target_p_holm"] == pytest.approx(min(1.0, row["steps_to_target_p"]
                                                              * (len(known) - known.index(row["steps_to_target_p"]))))


def test_bytes_to_the_target_sum_the_air_up_to_the_round_that_reached_it(tmp_path):
    pd.DataFrame({"round": [1, 1, 2, 3, 4], "bytes_on_air": [10, 5, 20, 30, 40]}).to_csv(tmp_path / "links.csv",
                                                                                        index=False)
    assert detag_table.bytes_to_target(tmp_path, 2.0) == 35.0  # both exchanges of round 1, then round 2
    assert math.isnan(detag_table.bytes_to_target(tmp_path, math.nan))


def tuning_rows(sweep: str, fast_lr: float) -> list[dict]:
    """A tuning where ``fast_lr`` reaches the target in 5 rounds and the other rates in 20."""
    return [{"sweep": sweep, "algorithm.name": "detag", "algorithm.lr": lr, "rounds": 100, "status": "done",
             "conv_rounds": 5.0 if lr == fast_lr else 20.0, "final_acc": 0.9, "run_id": f"{sweep}-{lr}", "seed": 0}
            for lr in (0.1, 0.316, 1.0)]


def test_each_setting_is_held_to_its_own_tuning():
    """The wireless tuning chose 0.1 and the paper's 0.316: a paper sweep at 0.1 is refused, naming the field,
    though 0.1 is the other setting's choice."""
    tuning = tuning_rows("detag-paper-tuning-tune", 0.316) + tuning_rows("detag-wireless-tuning-tune", 0.1)
    evaluation = [{"sweep": sweep, "algorithm.name": "detag", "algorithm.lr": lr, "status": "done", "seed": 1,
                   "rounds": 100} for sweep, lr in (("detag-paper", 0.1), ("detag-wireless", 0.1))]
    runs = pd.DataFrame(tuning + evaluation)
    with pytest.raises(TuningError, match=r"algorithm_overrides\.detag\.lr: sweep 'detag-paper' uses 0\.1; "
                                          r"the tuning chose 0\.316"):
        detag_table.check_tuned(runs)
    runs.loc[runs["sweep"] == "detag-paper", "algorithm.lr"] = 0.316
    detag_table.check_tuned(runs)  # both settings at their own choices


def test_a_setting_without_its_tuning_is_refused():
    runs = pd.DataFrame(tuning_rows("detag-paper-tuning-tune", 0.316) + [
        {"sweep": "detag-wireless", "algorithm.name": "detag", "algorithm.lr": 0.316, "status": "done", "seed": 1,
         "rounds": 100}])
    with pytest.raises(TuningError, match="was not tuned"):
        detag_table.check_tuned(runs)


def test_a_figure_to_the_target_is_never_a_mean_over_the_seeds_that_reached_it_alone():
    """Two of three seeds reach the target (10 and 20 gradients of budgets 100): the cell shows the censored mean
    (10 + 20 + 100) / 3 as a lower bound; every seed reached it: mean ± interval; none: a dash."""
    some = runs_of([{"algorithm.name": "sgp", "seed": seed, "local_steps": 100, "steps_to_target": steps,
                     "time_to_target_s": steps / 10} for seed, steps in ((1, 10.0), (2, 20.0), (3, math.nan))])
    row = detag_table.settings_table(some, "detag-paper").iloc[0]
    assert detag_table.to_target(row, "steps_to_target", 0) == "≥ 43 (2/3)"
    every = some.assign(steps_to_target=[10.0, 20.0, 30.0], time_to_target_s=[1.0, 1.0, 1.0])
    row = detag_table.settings_table(every, "detag-paper").iloc[0]
    half = stats.t.ppf(0.975, 2) * 10.0 / math.sqrt(3)
    assert detag_table.to_target(row, "steps_to_target", 0) == f"20 ± {half:.0f} (3/3)"
    none = some.assign(steps_to_target=math.nan, time_to_target_s=math.nan)
    row = detag_table.settings_table(none, "detag-paper").iloc[0]
    assert detag_table.to_target(row, "steps_to_target", 0) == "— (0/3)"


def test_the_claim_holds_in_a_cell_only_where_detag_needs_separated_less_than_each_of_the_four():
    """Cell gap 0.5: DeTAG reaches the target in about 10 rounds, D-PSGD, D², DSGT and SGP in about 50: the claim
    holds there. Cell gap 1.0: D² takes about 5: the claim fails there (one of them needs less)."""
    rng = np.random.default_rng(0)
    rows = []
    for gap, d2_rounds in ((0.5, 50.0), (1.0, 5.0)):
        for name in ("detag", "dpsgd", "d2", "dsgt", "sgp"):
            centre = 10.0 if name == "detag" else d2_rounds if name == "d2" else 50.0
            rows += [{"algorithm.name": name, "seed": seed, "spectral_gap": gap,
                      "conv_rounds": centre + rng.uniform(-0.5, 0.5)} for seed in range(1, 9)]
    differences = detag_table.paired(runs_of(rows))
    sentence = detag_table.claim_sentence(differences, "detag-paper", 2, 0.8)
    assert "in rounds it holds in 1 (shuffled 0, gap 0.500) and one of them needs less in 1" in sentence, sentence
    assert detag_table.tally(differences, "detag-paper", "d2", "conv_rounds") == "D² 1 / 1 / 0"
    assert detag_table.tally(differences, "detag-paper", "sgp", "conv_rounds") == "SGP 2 / 0 / 0"


def test_a_censored_budget_below_what_the_other_needed_says_nothing():
    """DSGT never reaches the target in its 100 gradients; DeTAG reaches it after 190 (its rounds hold 19 each):
    DSGT might have needed fewer or more, so the pair is left out, not read as DeTAG needing 90 more."""
    runs = runs_of([{"algorithm.name": name, "seed": seed, "local_steps": budget, "steps_to_target": reached}
                    for seed in (1, 2, 3) for name, budget, reached in (("detag", 1900, 190.0),
                                                                        ("dsgt", 100, math.nan))])
    row = detag_table.paired(runs).iloc[0]
    assert row["steps_to_target_pairs"] == 0 and math.isnan(row["steps_to_target_diff"])
    runs.loc[runs["algorithm.name"] == "dsgt", "local_steps"] = 300  # a budget beyond 190: a lower bound, kept
    row = detag_table.paired(runs).iloc[0]
    assert row["steps_to_target_pairs"] == 3 and row["steps_to_target_diff"] == pytest.approx(110.0)
    assert row["steps_to_target_one_censored"] == 3 and row["steps_to_target_p"] == 0.0
