"""A cached trace knows the code that made it and what it is (bridge/identity.py, bridge/link_source.py)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace

import numpy as np
import pytest

import bridge.link_source
from bridge import obtain_trace, trace_key
from bridge.identity import ROOT, SIMULATOR_SOURCES, simulator_files, simulator_fingerprint
from ns3_scenarios.scenario import ScenarioConfig

SCENARIO = ScenarioConfig(devices=8, density=0.6)
PAYLOAD = (3_000,)


def _copy_sources(tmp_path):
    """The trace-making sources and one algorithm file, copied under ``tmp_path`` as in the repository."""
    for path in simulator_files(ROOT) + [ROOT / "learner" / "algorithms" / "dpsgd.py"]:
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return tmp_path


def test_a_change_to_the_cpp_helper_changes_the_trace_key_and_a_change_to_an_algorithm_does_not(tmp_path,
                                                                                                monkeypatch):
    copy = _copy_sources(tmp_path)
    assert simulator_fingerprint(copy) == simulator_fingerprint()
    key = trace_key("ns3", SCENARIO, PAYLOAD, 3, 0)
    algorithm = copy / "learner" / "algorithms" / "dpsgd.py"
    algorithm.write_text(algorithm.read_text() + "\n# a learner change\n")
    monkeypatch.setattr(bridge.link_source, "simulator_fingerprint", lambda: simulator_fingerprint(copy))
    assert trace_key("ns3", SCENARIO, PAYLOAD, 3, 0) == key
    helper = copy / "ns3_scenarios" / "adhoc_network.h"
    helper.write_text(helper.read_text().replace("kSleepRetryS = 0.001", "kSleepRetryS = 0.002"))
    assert trace_key("ns3", SCENARIO, PAYLOAD, 3, 0) != key
    assert "ns3_scenarios" in SIMULATOR_SOURCES and "messages/schedules.py" in SIMULATOR_SOURCES


def test_a_trace_records_its_key_inputs_and_the_simulator_that_made_it(tmp_path):
    trace, reused = obtain_trace("ideal", SCENARIO, PAYLOAD, 3, 0, tmp_path)
    meta = json.loads((tmp_path / trace_key("ideal", SCENARIO, PAYLOAD, 3, 0) / "meta.json").read_text())
    assert not reused and meta["simulator"] == simulator_fingerprint() == trace.meta["simulator"]
    assert meta["key_inputs"]["seed"] == 0 and meta["key_inputs"]["rounds"] == 3
    assert len(meta["arrays_sha256"]) == 64
    assert obtain_trace("ideal", SCENARIO, PAYLOAD, 3, 0, tmp_path)[1]  # reused when nothing changed


def _entry(cache, scenario, seed):
    return cache / trace_key("ideal", scenario, PAYLOAD, 3, seed)


@pytest.mark.parametrize("impostor", ["another seed", "another size"])
def test_a_cache_entry_replaced_by_another_requests_trace_is_made_again(tmp_path, caplog, impostor):
    right, _ = obtain_trace("ideal", SCENARIO, PAYLOAD, 3, 0, tmp_path)
    other = replace(SCENARIO, devices=6) if impostor == "another size" else SCENARIO
    obtain_trace("ideal", other, PAYLOAD, 3, 1 if impostor == "another seed" else 0, tmp_path)
    entry = _entry(tmp_path, SCENARIO, 0)
    for name in ("trace.npz", "meta.json"):
        shutil.copy2(_entry(tmp_path, other, 1 if impostor == "another seed" else 0) / name, entry / name)
    with caplog.at_level(logging.WARNING, logger="nsdml.traces"):
        again, reused = obtain_trace("ideal", SCENARIO, PAYLOAD, 3, 0, tmp_path)
    assert not reused
    np.testing.assert_array_equal(again.done_s, right.done_s)
    assert again.devices == 8
    assert "made again" in caplog.text and ("seed" if impostor == "another seed" else "scenario") in caplog.text


def test_a_cache_entry_with_an_edited_array_is_made_again(tmp_path, caplog):
    right, _ = obtain_trace("ideal", SCENARIO, PAYLOAD, 3, 0, tmp_path)
    entry = _entry(tmp_path, SCENARIO, 0)
    with np.load(entry / "trace.npz", allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["done_s"] = np.where(np.isnan(arrays["done_s"]), np.nan, arrays["done_s"] * 0.5).astype(np.float32)
    np.savez(entry / "trace.npz", **arrays)
    with caplog.at_level(logging.WARNING, logger="nsdml.traces"):
        again, reused = obtain_trace("ideal", SCENARIO, PAYLOAD, 3, 0, tmp_path)
    assert not reused and "SHA-256" in caplog.text
    np.testing.assert_array_equal(again.done_s, right.done_s)
