"""Worker process: simulate a scenario in ns-3 and write the raw per-slot results.

    python -m ns3_scenarios.worker REQUEST.json OUT_DIR

REQUEST.json: {"scenario": {ScenarioConfig fields}, "seed": int,
               "slot_payloads": [bytes of slot 0, slot 1, ...]}
(a slot is one exchange of one round, in order). OUT_DIR receives
``arrays.npz`` (done_s, rx_bytes, positions, idle_delivered) and
``worker.json`` (ns-3 version, counts, timings). This is the only process that
imports ns-3: a fatal ns-3 error kills it, not the learner.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ns3_scenarios.scenario import ScenarioConfig, place_devices


def simulate(config: ScenarioConfig, seed: int, slot_payloads: list[int]) -> tuple[dict[str, np.ndarray], dict]:
    from ns3_scenarios import ns3_loader

    started = time.perf_counter()
    cpp = ns3_loader.load()
    loaded = time.perf_counter()
    placement = place_devices(config, seed)
    params = cpp.nsdml.BroadcastSlots()
    params.x = cpp.std.vector["double"](placement.positions_m[:, 0].tolist())
    params.y = cpp.std.vector["double"](placement.positions_m[:, 1].tolist())
    params.payloads = cpp.std.vector["uint32_t"]([int(p) for p in slot_payloads])
    params.phyMode = config.phy_mode
    params.txPowerDbm = config.tx_power_dbm
    params.datagramBytes = config.datagram_bytes
    params.slotPeriodS = config.slot_period_s
    params.startJitterS = config.start_jitter_s
    params.datagramIntervalS = config.datagram_interval_s
    params.seed = 1
    params.run = seed + 1
    flat = cpp.nsdml.RunBroadcastSlots(params)
    view = flat.data()
    view.reshape((flat.size(),))
    values = np.frombuffer(view, dtype=np.float64, count=flat.size()).copy()
    simulated = time.perf_counter()

    n, slots = config.devices, len(slot_payloads)
    nn = n * n
    idle = values[:nn].reshape(n, n) > 0
    blocks = values[nn:nn + 2 * slots * nn].reshape(slots, 2, n, n)
    rx_bytes = blocks[:, 0].astype(np.int64)
    done_s = blocks[:, 1]
    done_s = np.where((done_s >= 0) & (done_s <= config.deadline_s), done_s, np.nan).astype(np.float32)
    first_slot_s, events, frames = values[-3:]
    arrays = {
        "done_s": done_s,
        "rx_bytes": rx_bytes,
        "positions": np.broadcast_to(placement.positions_m.astype(np.float32), (slots, n, 2)).copy(),
        "idle_delivered": idle,
    }
    stats = {
        "ns3_version": ns3_loader.ns3_version(),
        "scenario": asdict(config),
        "seed": seed,
        "area_side_m": placement.side_m,
        "range_m": config.range_m,
        "geometric_density": placement.geometric_density,
        "idle_density": float(idle.sum() / (n * (n - 1))),
        "events": int(events),
        "frames_sent": int(frames),
        "first_slot_s": float(first_slot_s),
        "load_seconds": loaded - started,
        "simulate_seconds": simulated - loaded,
    }
    return arrays, stats


def inject_fault(fault: str) -> None:
    """Fault injection for the tests (environment NSDML_WORKER_FAULT); a real run never sets it.

    crash: the process is killed outright; hang: it never answers;
    fatal: a real ns-3 fatal error (an unknown attribute), which ends the process with code 133.
    """
    print(f"worker: injecting fault {fault!r}", file=sys.stderr, flush=True)
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "hang":
        time.sleep(10**6)
    elif fault == "fatal":
        from ns3_scenarios import ns3_loader

        cpp = ns3_loader.load()
        cpp.ns3.Config.SetDefault("ns3::WifiPhy::NoSuchAttribute", cpp.ns3.StringValue("1"))
    raise SystemExit(f"worker: unknown fault {fault!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m ns3_scenarios.worker REQUEST.json OUT_DIR", file=sys.stderr)
        return 2
    if os.environ.get("NSDML_WORKER_FAULT"):
        inject_fault(os.environ["NSDML_WORKER_FAULT"])
    request = json.loads(Path(argv[0]).read_text())
    config = ScenarioConfig(**request["scenario"])
    arrays, stats = simulate(config, int(request["seed"]), list(request["slot_payloads"]))
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "arrays.npz", **arrays)
    (out / "worker.json").write_text(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
