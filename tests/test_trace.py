import json

import numpy as np
import pytest

from bridge import LinkTrace, TraceFormatError, link_stats, obtain_trace, trace_key
from ns3_scenarios.scenario import ScenarioConfig


def _trace(rounds=3, exchanges=2, n=4, seed=0):
    rng = np.random.default_rng(seed)
    shape = (rounds, exchanges, n, n)
    delivered = rng.random(shape) < 0.5
    return LinkTrace(
        done_s=np.where(delivered, rng.random(shape), np.nan).astype(np.float32),
        rx_bytes=rng.integers(0, 5000, shape),
        positions=rng.random((rounds, n, 2)).astype(np.float32),
        idle_delivered=rng.random((n, n)) < 0.7,
        payload_bytes=(3000, 1200)[:exchanges],
        deadline_s=1.0,
        meta={"seed": seed, "idle_density": 0.5},
    )


def test_round_trip_preserves_every_array_and_field(tmp_path):
    trace = _trace()
    trace.save(tmp_path / "t")
    loaded = LinkTrace.load(tmp_path / "t")
    for name in ("done_s", "rx_bytes", "positions", "idle_delivered"):
        assert np.array_equal(getattr(loaded, name), getattr(trace, name), equal_nan=name == "done_s")
        assert getattr(loaded, name).dtype == getattr(trace, name).dtype
    assert loaded.payload_bytes == trace.payload_bytes and loaded.deadline_s == trace.deadline_s
    assert loaded.meta["idle_density"] == 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_truncated_or_foreign_trace_is_rejected(tmp_path):
    trace = _trace()
    trace.save(tmp_path / "t")
    data = (tmp_path / "t" / "trace.npz").read_bytes()
    (tmp_path / "t" / "trace.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError):
        LinkTrace.load(tmp_path / "t")
    trace.save(tmp_path / "u")
    meta = json.loads((tmp_path / "u" / "meta.json").read_text())
    (tmp_path / "u" / "meta.json").write_text(json.dumps(dict(meta, schema_version=999)))
    with pytest.raises(TraceFormatError, match="schema"):
        LinkTrace.load(tmp_path / "u")


def test_round_links_hand_out_exchanges_in_order_and_check_payloads():
    trace = _trace()
    links = trace.round_links(1)
    assert np.array_equal(links.exchange(3000).numpy(), trace.delivered(1, 0))
    with pytest.raises(RuntimeError, match="simulated for 1200"):
        links.exchange(999)
    assert np.array_equal(links.exchange(1200).numpy(), trace.delivered(1, 1))
    with pytest.raises(RuntimeError, match="exchange 3"):
        links.exchange(1200)


def test_exchange_duration_is_the_deadline_unless_every_intended_pair_delivered():
    trace = _trace(rounds=2, exchanges=1, n=3)
    trace.idle_delivered[:] = True  # every pair intended (broadcast to neighbours)
    trace.intended[:] = ~np.eye(3, dtype=bool)
    trace.done_s[0, 0] = np.array([[np.nan, 0.2, 0.3], [0.1, np.nan, 0.4], [0.5, 0.25, np.nan]])
    trace.done_s[1, 0] = trace.done_s[0, 0]
    trace.done_s[1, 0, 0, 1] = np.nan
    links = trace.round_links(0)
    links.exchange(3000)
    assert links.duration_s == pytest.approx(0.5)
    links = trace.round_links(1)
    links.exchange(3000)
    assert links.duration_s == pytest.approx(1.0)


def test_cache_key_changes_with_payload_seed_and_scenario():
    scenario = ScenarioConfig(devices=6)
    base = trace_key("ns3", scenario, (100,), 5, 0)
    assert base == trace_key("ns3", ScenarioConfig(devices=6), (100,), 5, 0)
    assert base != trace_key("ns3", scenario, (101,), 5, 0)
    assert base != trace_key("ns3", scenario, (100,), 5, 1)
    assert base != trace_key("ns3", ScenarioConfig(devices=6, density=0.6), (100,), 5, 0)
    assert base != trace_key("synthetic", scenario, (100,), 5, 0)


def test_damaged_cache_entry_is_regenerated(tmp_path):
    scenario = ScenarioConfig(devices=6)
    first, reused = obtain_trace("synthetic", scenario, (100,), 4, 0, tmp_path)
    assert not reused
    entry = tmp_path / trace_key("synthetic", scenario, (100,), 4, 0)
    (entry / "trace.npz").write_bytes(b"not a zip")
    again, reused = obtain_trace("synthetic", scenario, (100,), 4, 0, tmp_path)
    assert not reused
    assert np.array_equal(again.done_s, first.done_s, equal_nan=True)
    _, reused = obtain_trace("synthetic", scenario, (100,), 4, 0, tmp_path)
    assert reused


def test_saving_the_same_trace_twice_gives_identical_bytes(tmp_path, monkeypatch):
    import time

    trace = _trace()
    trace.save(tmp_path / "a")
    later = time.time() + 86400  # a day later: archive timestamps must not leak into the bytes
    monkeypatch.setattr(time, "time", lambda: later)
    trace.save(tmp_path / "b")
    for name in ("trace.npz", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_offline_links_take_one_int_or_one_equal_int_per_sender():
    trace = _trace(n=4)
    links = trace.round_links(0)
    assert np.array_equal(links.exchange([3000] * 4).numpy(), trace.delivered(0, 0))
    with pytest.raises(RuntimeError, match="online"):
        links.exchange([1200, 1200, 1200, 999])


def test_link_stats_count_completion_percentiles_air_bytes_and_lost_datagrams():
    n = 3
    done = np.full((1, 1, n, n), np.nan, dtype=np.float32)
    done[0, 0, 0, 1], done[0, 0, 1, 0], done[0, 0, 2, 0] = 0.1, 0.2, 0.3
    intended = np.zeros((1, 1, n, n), dtype=bool)
    intended[0, 0, 0, 1] = intended[0, 0, 1, 0] = intended[0, 0, 2, 0] = intended[0, 0, 0, 2] = True
    rx = np.zeros((1, 1, n, n), dtype=np.int64)
    rx[0, 0, 0, 1] = rx[0, 0, 1, 0] = rx[0, 0, 2, 0] = 3000
    rx[0, 0, 0, 2] = 1400  # 1 of 3 datagrams (1400, 1400, 200) arrived: 2 lost
    trace = LinkTrace(done_s=done, rx_bytes=rx, positions=np.zeros((1, n, 2), dtype=np.float32),
                      idle_delivered=intended[0, 0], payload_bytes=(3000,), deadline_s=1.0, intended=intended,
                      air_bytes=np.array([[9999]]), frames=np.array([[7]]))
    row, = link_stats(trace, 0, 1)
    assert row["intended_pairs"] == 4 and row["delivered_pairs"] == 3
    assert row["measured_density"] == pytest.approx(3 / 6)
    assert row["mean_completion_s"] == pytest.approx(0.2)
    assert row["p95_completion_s"] == pytest.approx(np.percentile([0.1, 0.2, 0.3], 95))
    assert (row["bytes_on_air"], row["frames_on_air"], row["packets_lost"]) == (9999, 7, 2)
    assert row["bytes_received"] == 3 * 3000 + 1400


def test_the_slot_schema_lays_out_decodes_and_fills_every_field():
    from ns3_scenarios.scenario import SLOT_ARRAYS, SLOT_FIELDS, SLOT_SCHEMA, decode_slot, slot_layout

    n = 3
    names, sizes = slot_layout(n)
    assert names == [field.name for field in SLOT_SCHEMA] and sizes[names.index("done_s")] == n * n
    assert sizes[names.index("radio_s")] == 4 * n and sizes[names.index("events")] == 1
    rng = np.random.default_rng(0)
    parts = {name: rng.integers(0, 5, size) for name, size in zip(names, sizes)}
    flat = np.concatenate([parts[name] for name in names]).astype(np.float64)
    decoded = decode_slot(flat, n)
    for name in names:  # the flat record's fields in declaration order, each in its shape and dtype
        field = SLOT_FIELDS[name]
        assert decoded[name].shape == field.shape(n) and decoded[name].dtype == np.dtype(field.dtype)
        np.testing.assert_array_equal(decoded[name].ravel(), parts[name] > 0 if field.dtype == "bool" else parts[name])
    by_name = decode_slot({name: values.ravel().tolist() for name, values in decoded.items()}, n)  # online form
    assert all(np.array_equal(by_name[name], decoded[name]) for name in names)
    # A trace built from done_s and rx_bytes only gets every other field from its declaration.
    done = np.full((2, 1, n, n), np.nan, dtype=np.float32)
    trace = LinkTrace(done_s=done, rx_bytes=np.zeros((2, 1, n, n), dtype=np.int64),
                      positions=np.zeros((2, n, 2), dtype=np.float32), idle_delivered=np.ones((n, n), dtype=bool),
                      payload_bytes=(10,), deadline_s=1.0)
    for name in SLOT_ARRAYS:
        assert getattr(trace, name).shape == (2, 1, *SLOT_FIELDS[name].shape(n))
    assert trace.intended[0, 0].sum() == n * (n - 1) and trace.events.sum() == 0
    with pytest.raises(TypeError, match="not in SLOT_SCHEMA"):
        LinkTrace(**{**trace.fields(), "warp": np.zeros(1)})
