"""The large-network table's arithmetic (experiments/campaigns/scale_table.py) on hand-made records."""

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from experiments.campaigns.scale_table import cost_row, fitted_exponent, speedup_markdown


def test_the_fitted_exponent_recovers_a_power_law_and_ignores_small_networks():
    rows = pd.DataFrame({"devices": [20, 50, 100, 200, 500, 1000]})
    rows["seconds"] = [99.0, 99.0] + [0.003 * n ** 1.5 for n in (100, 200, 500, 1000)]  # fixed costs below 100
    assert fitted_exponent(rows, "seconds") == pytest.approx(1.5)
    assert math.isnan(fitted_exponent(rows[rows["devices"] < 200], "seconds"))


def test_a_cost_row_divides_by_the_slots_and_sums_the_learner_phases():
    config = SimpleNamespace(devices=200, scenario=SimpleNamespace(channel="spectrum_pruned"),
                             model=SimpleNamespace(name="logreg"))
    info = {"trace_meta": {"rounds": 4, "payload_bytes": [31400], "area_side_m": 400.0, "idle_density": 0.05,
                           "simulate_seconds": 20.0, "setup_seconds": 6.0, "events": 8_000_000, "frames_sent": 20_000,
                           "peak_rss_mb": 700.0},
            "wall_split_s": {"training": 1.0, "aggregation": 0.5, "evaluation": 0.5, "io": 9.0, "links": 30.0},
            "rounds_completed": 4, "peak_resident_mb": 900.0}
    row = cost_row(config, info)
    assert row["ns3_s_per_round"] == 5.0 and row["events_per_frame"] == 400.0
    assert row["events_per_round"] == 2_000_000 and row["learner_s_per_round"] == 1.5 / 4
    assert row["evaluation_s"] == 0.5 / 5  # rounds 0 to 4 are evaluated
    assert row["learner_peak_mb"] == 900.0


def test_the_speedup_is_relative_to_the_serial_trace():
    record = {"case": {"devices": 500, "rounds": 8, "chunk_rounds": 4}, "measured_utc": "2026-12-06T00:00:00Z",
              "machine": {"cores": 2, "cpu": "test"}, "wall_s": {"serial": 100.0, "2 chunks, 2 workers": 50.0}}
    assert "| 2 chunks, 2 workers | 50 | 2.00× |" in speedup_markdown(record)
