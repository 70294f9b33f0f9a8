"""Traces made in chunks (bridge/chunks.py) and the pruned spectrum channel, over real ns-3.

Chunked against serial: chunk 0 is the serial trace's first rounds exactly; the
devices' paths are the serial ones; over the whole trace the per-pair delivery
rates and the completion times agree within sampling error (the test: pooled
delivery-rate difference within 4 binomial standard errors, and a two-sample
Kolmogorov-Smirnov test on completion times not rejecting at 1 %); an
interrupted chunked trace resumes with only its missing chunks.

Pruned against unpruned spectrum channel: identical arrays where no receiver is
beyond the cut-off; fewer events where some are.
"""

import numpy as np
import pytest
from scipy import stats

from bridge import chunks, obtain_trace
from bridge.link_source import make_ns3_chunk, missing_chunks, trace_key
from ns3_scenarios.scenario import ScenarioConfig

PAYLOAD = (31400,)
MOVING = dict(devices=10, mobility="random_walk", speed_mps=5.0)


def test_chunk_ranges_cover_the_rounds_once():
    assert chunks.chunk_ranges(7, 3) == [(0, 3), (3, 3), (6, 1)]
    assert chunks.chunk_ranges(6, 0) == [(0, 6)]
    assert chunks.chunk_ranges(4, 10) == [(0, 4)]


@pytest.fixture(scope="module")
def serial_and_chunked(tmp_path_factory):
    cache = tmp_path_factory.mktemp("chunk-cache")
    serial, _ = obtain_trace("ns3", ScenarioConfig(**MOVING), PAYLOAD, 8, 3, cache)
    chunked_config = ScenarioConfig(**MOVING, trace_chunk_rounds=4)
    chunked, reused = obtain_trace("ns3", chunked_config, PAYLOAD, 8, 3, cache)
    return serial, chunked, reused, cache, chunked_config


def test_the_first_chunk_is_the_serial_trace_and_devices_move_as_in_it(serial_and_chunked):
    serial, chunked, reused, cache, config = serial_and_chunked
    assert not reused
    for name in ("rx_bytes", "done_s", "radio_energy_j", "intended", "events"):
        assert np.array_equal(getattr(serial, name)[:4], getattr(chunked, name)[:4], equal_nan=True), name
    assert not np.array_equal(serial.done_s[4:], chunked.done_s[4:], equal_nan=True)  # chunk 1 draws its own
    assert np.array_equal(serial.positions, chunked.positions)  # random walk: the serial paths at every round
    assert np.array_equal(serial.idle_delivered, chunked.idle_delivered)
    assert [c["first_slot"] for c in chunked.meta["chunks"]] == [0, 4]
    assert chunked.meta["events"] == sum(c["events"] for c in chunked.meta["chunks"])
    assert not chunks.chunks_dir(cache / trace_key("ns3", config, PAYLOAD, 8, 3)).exists()  # joined, then removed


def test_chunked_and_serial_traces_agree_within_sampling_error(serial_and_chunked):
    serial, chunked, *_ = serial_and_chunked
    intended = serial.intended[4:, 0]
    assert np.array_equal(intended, chunked.intended[4:, 0])
    delivered_serial = ~np.isnan(serial.done_s[4:, 0])[intended]
    delivered_chunked = ~np.isnan(chunked.done_s[4:, 0])[intended]
    p = (delivered_serial.mean() + delivered_chunked.mean()) / 2
    standard_error = np.sqrt(2 * p * (1 - p) / intended.sum())
    assert abs(delivered_serial.mean() - delivered_chunked.mean()) <= 4 * standard_error
    times_serial = serial.done_s[4:, 0][intended & ~np.isnan(serial.done_s[4:, 0])]
    times_chunked = chunked.done_s[4:, 0][intended & ~np.isnan(chunked.done_s[4:, 0])]
    assert len(times_serial) > 20 and len(times_chunked) > 20
    assert stats.ks_2samp(times_serial, times_chunked).pvalue > 0.01


def test_an_interrupted_chunked_trace_makes_only_its_missing_chunks(tmp_path, monkeypatch):
    config = ScenarioConfig(devices=6, trace_chunk_rounds=2)
    assert missing_chunks("ns3", config, PAYLOAD, 4, 0, tmp_path) == [0, 1]
    make_ns3_chunk(config, PAYLOAD, 4, 0, 1, tmp_path)  # as if the process died after chunk 1
    assert missing_chunks("ns3", config, PAYLOAD, 4, 0, tmp_path) == [0]
    made = []
    monkeypatch.setattr(chunks.worker, "run_offline", _counting(chunks.worker.run_offline, made))
    trace, reused = obtain_trace("ns3", config, PAYLOAD, 4, 0, tmp_path)
    assert made == ["worker"] and trace.rounds == 4 and not reused
    assert missing_chunks("ns3", config, PAYLOAD, 4, 0, tmp_path) == []  # the trace is cached now


def _counting(run_offline, made):
    def counted(*args, **kwargs):
        made.append("worker")
        return run_offline(*args, **kwargs)
    return counted


def test_the_pruned_channel_equals_the_unpruned_one_when_nobody_is_beyond_the_cut_off(tmp_path):
    small = dict(devices=8, density=0.9)
    assert ScenarioConfig(**small).range_m * 4 < ScenarioConfig(**small).cutoff_m  # every pair well inside
    unpruned, _ = obtain_trace("ns3", ScenarioConfig(**small, channel="spectrum"), PAYLOAD, 2, 0, tmp_path)
    pruned, _ = obtain_trace("ns3", ScenarioConfig(**small, channel="spectrum_pruned"), PAYLOAD, 2, 0, tmp_path)
    side = unpruned.meta["area_side_m"]
    assert side * np.sqrt(2) < ScenarioConfig(**small).cutoff_m
    for name in ("rx_bytes", "done_s", "intended", "radio_energy_j", "air_bytes", "frames", "events", "positions",
                 "idle_delivered", "idle_rate"):
        assert np.array_equal(getattr(unpruned, name), getattr(pruned, name), equal_nan=True), name
    assert (~np.isnan(pruned.done_s)).sum() > 0


def test_pruning_removes_receptions_beyond_the_cut_off(tmp_path):
    sparse = dict(devices=30, mean_neighbours=2.0)
    unpruned, _ = obtain_trace("ns3", ScenarioConfig(**sparse, channel="spectrum"), PAYLOAD, 1, 0, tmp_path)
    pruned, _ = obtain_trace("ns3", ScenarioConfig(**sparse, channel="spectrum_pruned"), PAYLOAD, 1, 0, tmp_path)
    assert unpruned.meta["area_side_m"] * np.sqrt(2) > ScenarioConfig(**sparse).cutoff_m
    assert pruned.events.sum() < 0.95 * unpruned.events.sum()
    assert np.array_equal(pruned.idle_delivered, unpruned.idle_delivered)
    # What the receivers beyond the cut-off changed: only interference below the noise floor, so the completed
    # messages agree to within 2 % of the addressed pairs (a spectrum PHY sums every signal it is handed).
    completed = lambda trace: ~np.isnan(trace.done_s) & trace.intended
    assert (completed(pruned) != completed(unpruned)).sum() <= 0.02 * pruned.intended.sum()
