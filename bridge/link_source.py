"""Find a cached LinkTrace, or run the ns-3 worker to make one.

The cache key is a hash of the canonical scenario config, the payload of each
exchange, the number of rounds, the seed and the link model, so every
algorithm with the same payload replays the *same* trace (common random
numbers). A trace is cached only after the worker succeeded and the result
passed its checks; a failed worker leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bridge.synthetic import synthetic_trace
from bridge.trace import SCHEMA_VERSION, LinkTrace, TraceFormatError
from ns3_scenarios.scenario import ScenarioConfig

LINK_MODELS = ("ns3", "synthetic")
STDERR_TAIL_LINES = 15


class WorkerError(RuntimeError):
    """The ns-3 worker failed to start, died, or hung."""


def trace_key(link_model: str, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int,
              seed: int) -> str:
    canonical = json.dumps({"schema": SCHEMA_VERSION, "link_model": link_model, "scenario": asdict(scenario),
                            "payload_bytes": list(payload_bytes), "rounds": rounds, "seed": seed}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def obtain_trace(link_model: str, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int, seed: int,
                 cache_dir: Path, timeout_s: float = 3600.0) -> tuple[LinkTrace, bool]:
    """Return (trace, reused): reused is True when the trace came from the cache."""
    if link_model not in LINK_MODELS:
        raise ValueError(f"network.link_model: unknown {link_model!r}; allowed: {', '.join(LINK_MODELS)}")
    directory = Path(cache_dir) / trace_key(link_model, scenario, payload_bytes, rounds, seed)
    if (directory / "meta.json").exists():
        try:
            return LinkTrace.load(directory), True
        except TraceFormatError:
            pass  # a damaged entry is simply made again
    if link_model == "synthetic":
        trace = synthetic_trace(scenario, seed, rounds, payload_bytes)
    else:
        trace = run_ns3_worker(scenario, payload_bytes, rounds, seed, timeout_s)
    trace.save(directory)
    return trace, False


def run_ns3_worker(scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int, seed: int,
                   timeout_s: float) -> LinkTrace:
    """Simulate every exchange of every round in one ns-3 process and wrap the result as a LinkTrace."""
    request = {"scenario": asdict(scenario), "seed": seed, "slot_payloads": list(payload_bytes) * rounds}
    with tempfile.TemporaryDirectory(prefix="nsdml-worker-") as scratch:
        scratch_path = Path(scratch)
        (scratch_path / "request.json").write_text(json.dumps(request))
        command = [sys.executable, "-m", "ns3_scenarios.worker", str(scratch_path / "request.json"),
                   str(scratch_path / "out")]
        where = f"ns-3 worker for {scenario.devices} devices, density {scenario.density}, seed {seed}"
        try:
            finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            raise WorkerError(f"{where} hung past {timeout_s:.0f} s; last stderr:\n{_tail(error.stderr)}") from error
        except OSError as error:
            raise WorkerError(f"{where} failed to start: {error}") from error
        if finished.returncode != 0:
            raise WorkerError(f"{where} exited with code {finished.returncode}; last stderr:\n"
                              f"{_tail(finished.stderr)}")
        try:
            stats = json.loads((scratch_path / "out" / "worker.json").read_text())
            with np.load(scratch_path / "out" / "arrays.npz", allow_pickle=False) as arrays:
                raw = {name: arrays[name] for name in arrays.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise WorkerError(f"{where} exited cleanly but wrote no readable result: {error}") from error
    n, exchanges = scenario.devices, len(payload_bytes)
    return LinkTrace(
        done_s=raw["done_s"].reshape(rounds, exchanges, n, n),
        rx_bytes=raw["rx_bytes"].reshape(rounds, exchanges, n, n),
        positions=raw["positions"].reshape(rounds, exchanges, n, 2)[:, 0],
        idle_delivered=raw["idle_delivered"],
        payload_bytes=tuple(payload_bytes),
        deadline_s=scenario.deadline_s,
        meta=dict(stats, link_model="ns3", rounds=rounds),
    )


def _tail(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = (text or "").strip().splitlines()
    # cppyy answers a fatal signal with "*** Break ***" and a long thread backtrace that would bury
    # ns-3's own message (msg=..., NS_FATAL): quote what came before it.
    cut = next((i for i, line in enumerate(lines) if "*** Break ***" in line), len(lines))
    return "\n".join(lines[:cut][-STDERR_TAIL_LINES:]) or "(no stderr)"
