"""Find a cached LinkTrace, or run the ns-3 worker to make one (offline mode); open a run's link source.

Offline: ns-3 traces come from the worker, control traces (``bridge.controls``)
are computed here; the cache key is a hash of the canonical scenario config, the payload
of each exchange, the number of rounds, the seed, the link model (a schedule's plan) and
the fingerprint of the code that makes traces (``bridge.identity``), so every
algorithm with the same payload replays the *same* trace (common random
numbers), and a changed simulator makes new ones. A trace is cached only after the worker
succeeded and the result passed its checks; a failed worker leaves nothing behind. An
entry records its key's inputs and its arrays' SHA-256; one that does not match them
(copied from another request, edited, damaged) is made again, with a warning saying why. Online mode lives in
``bridge.online``; ``open_links`` hands the runner either behind one interface.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bridge.controls import control_trace
from bridge.messages import DelayMessages, barrier_link_trace
from bridge.identity import simulator_fingerprint
from bridge.ladder import ladder_trace
from bridge.link_models import LINK_MODELS
from bridge.synthetic import synthetic_trace
from bridge.trace import SCHEMA_VERSION, LinkTrace, RoundLinks, TraceFormatError
from bridge import chunks, worker
from bridge.worker import Progress, WorkerError, describe_worker
from ns3_scenarios.scenario import SLOT_ARRAYS, SLOT_FIELDS, ScenarioConfig, exchange_senders, scenario_identity
from messages.schedules import Plan, schedule_of

MODES = ("offline", "online")
LOG = logging.getLogger("nsdml.traces")


class OfflineLinks:
    """Offline mode behind the run's link-source interface: one trace, simulated (or found) up front."""

    def __init__(self, trace: LinkTrace, reused: bool):
        self.trace = trace
        self.reused = reused

    def describe(self) -> str:
        return "reused cached trace" if self.reused else "simulated new trace"

    def round_links(self, round_index: int) -> RoundLinks:
        return self.trace.round_links(round_index)

    def finish(self) -> bool:
        """Called once after the last round; returns whether ns-3 was spared (the trace came from the cache)."""
        return self.reused


def open_links(mode: str, link_model: str, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int,
               seed: int, cache_dir: Path, timeout_s: float = 3600.0, progress: Progress = None,
               barrier: Plan | None = None):
    """The run's link source: ``.trace``, ``.describe()``, ``.round_links(r)`` (the algorithm's ``Links``),
    ``.finish() -> reused``. ``progress`` hears an offline ns-3 worker's progress reports. ``barrier``: the
    local-barrier schedule's plan (offline only; its steps are the trace's rounds)."""
    if mode not in MODES:
        raise ValueError(f"mode: unknown {mode!r}; allowed: {', '.join(MODES)}")
    if mode == "online":
        if link_model != "ns3":
            raise ValueError(f"mode = \"online\" needs link_model = \"ns3\", not {link_model!r}")
        from bridge.online import OnlineLinks

        return OnlineLinks(scenario, payload_bytes, rounds, seed, cache_dir, timeout_s)
    return OfflineLinks(*obtain_trace(link_model, scenario, payload_bytes, rounds, seed, cache_dir, timeout_s,
                                      progress, barrier))


def key_inputs(link_model: str, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int,
               seed: int, barrier: Plan | None = None) -> dict:
    """What a trace is made from: the request and the simulator's code (its key hashes this)."""
    identity = {"schema": SCHEMA_VERSION, "simulator": simulator_fingerprint(), "link_model": link_model,
                "scenario": scenario_identity(scenario), "payload_bytes": list(payload_bytes), "rounds": rounds,
                "seed": seed}
    if barrier is not None:
        identity["barrier"] = asdict(barrier)
    return json.loads(json.dumps(identity))  # as it reads back from meta.json


def trace_key(link_model: str, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int,
              seed: int, barrier: Plan | None = None) -> str:
    canonical = json.dumps(key_inputs(link_model, scenario, payload_bytes, rounds, seed, barrier), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def cached(directory: Path, inputs: dict) -> LinkTrace | None:
    """The trace cached in ``directory`` if it is the one these inputs make (its recorded key inputs and its
    arrays' hash hold); else None, with a warning naming why when an entry was there."""
    if not (directory / "meta.json").exists():
        return None
    try:
        trace = LinkTrace.load(directory)
    except TraceFormatError as error:
        LOG.warning("link-trace cache entry %s is made again: %s", directory.name, error)
        return None
    if trace.meta.get("key_inputs") != inputs:
        recorded = trace.meta.get("key_inputs")
        differing = sorted(key for key in set(inputs) | set(recorded or {})
                           if not isinstance(recorded, dict) or recorded.get(key) != inputs.get(key))
        LOG.warning("link-trace cache entry %s is made again: it was made for another request or by other code "
                    "(differs in %s)", directory.name, ", ".join(differing) or "its key inputs")
        return None
    return trace


def store(trace: LinkTrace, directory: Path, inputs: dict) -> LinkTrace:
    """Save ``trace`` as the cache entry of ``inputs`` (meta: the key, its inputs, the simulator fingerprint)."""
    trace.meta.update(trace_key=directory.name, key_inputs=inputs, simulator=inputs["simulator"])
    trace.save(directory)
    return trace


def obtain_barrier_trace(link_model: str, scenario: ScenarioConfig, plan: Plan, seed: int, cache_dir: Path,
                         timeout_s: float = 3600.0, progress: Progress = None) -> tuple[LinkTrace, bool]:
    """(trace, reused) of the local-barrier schedule over ns-3 (in a worker) or a control's message core."""
    if link_model not in LINK_MODELS or not LINK_MODELS[link_model].message_core:
        raise ValueError(f"link_model: {link_model!r} has no message core; allowed with the local barrier: "
                         f"{', '.join(name for name, record in LINK_MODELS.items() if record.message_core)}")
    inputs = key_inputs(link_model, scenario, plan.payload_bytes, plan.steps, seed, plan)
    directory = Path(cache_dir) / trace_key(link_model, scenario, plan.payload_bytes, plan.steps, seed, plan)
    found = cached(directory, inputs)
    if found is not None:
        return found, True
    meta = {"link_model": link_model, "mode": "offline", "rounds": plan.steps,
            "schedule": plan.schedule, "barrier": asdict(plan)}
    if link_model == "ns3":
        log, stats = run_ns3_worker_log(scenario, plan, seed, timeout_s, progress)
        meta.update(stats)
    else:  # the control's own links per step and exchange, timed by the message core
        links = control_trace(link_model, scenario, plan.payload_bytes, plan.steps, seed)
        messages = DelayMessages(scenario, links)
        log = schedule_of(plan).run(messages, lambda step, exchange: links.intended[step, exchange])
        log.update(idle_delivered=links.idle_delivered, positions=links.positions[0])
        meta.update({key: links.meta[key] for key in ("idle_density", "area_side_m", "spectral_gap", "topology")
                     if key in links.meta}, sim_s=messages.now_s())
    trace = barrier_link_trace(log, plan.payload_bytes, plan.timeout_s, scenario.datagram_bytes, meta)
    return store(trace, directory, inputs), False


def run_ns3_worker_log(scenario: ScenarioConfig, plan: Plan, seed: int, timeout_s: float,
                       progress: Progress = None) -> tuple[dict[str, np.ndarray], dict]:
    """The local-barrier schedule simulated by an offline ns-3 worker: its message log and its stats."""
    request = {"scenario": asdict(scenario), "seed": seed, "plan": asdict(plan)}
    return _worker_result(request, scenario, seed, timeout_s, progress)


def _worker_result(request: dict, scenario: ScenarioConfig, seed: int, timeout_s: float,
                   progress: Progress) -> tuple[dict[str, np.ndarray], dict]:
    """Run an offline worker on ``request``; (its arrays, its stats), or WorkerError."""
    with tempfile.TemporaryDirectory(prefix="nsdml-worker-") as scratch:
        scratch_path = Path(scratch)
        (scratch_path / "request.json").write_text(json.dumps(request))
        command = worker.worker_command(str(scratch_path / "request.json"), str(scratch_path / "out"))
        worker.run_offline(command, describe_worker(scenario, seed), timeout_s, progress)
        try:
            stats = json.loads((scratch_path / "out" / "worker.json").read_text())
            with np.load(scratch_path / "out" / "arrays.npz", allow_pickle=False) as arrays:
                return {name: arrays[name] for name in arrays.files}, stats
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise WorkerError(f"{describe_worker(scenario, seed)} exited cleanly but wrote no readable result: "
                              f"{error}") from error


def obtain_trace(link_model: str, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int, seed: int,
                 cache_dir: Path, timeout_s: float = 3600.0, progress: Progress = None,
                 barrier: Plan | None = None) -> tuple[LinkTrace, bool]:
    """Return (trace, reused): reused is True when the trace came from the cache. ``progress`` (ns-3 only)
    receives the worker's reports: {"slots_done", "slots", "sim_s", "events"}. ``barrier``: the trace is the
    local-barrier schedule's message log instead (its steps are the rounds)."""
    if barrier is not None:
        return obtain_barrier_trace(link_model, scenario, barrier, seed, cache_dir, timeout_s, progress)
    if link_model not in LINK_MODELS:
        raise ValueError(f"link_model: unknown {link_model!r}; allowed: {', '.join(LINK_MODELS)}")
    inputs = key_inputs(link_model, scenario, payload_bytes, rounds, seed)
    directory = Path(cache_dir) / trace_key(link_model, scenario, payload_bytes, rounds, seed)
    found = cached(directory, inputs)
    if found is not None:
        return found, True
    kind = LINK_MODELS[link_model].kind
    if kind == "ladder":  # derived from the ns-3 trace of the same request: cached, or simulated once
        source, _ = obtain_trace("ns3", scenario, payload_bytes, rounds, seed, cache_dir, timeout_s, progress)
        trace = ladder_trace(link_model, source, seed)
    elif kind == "test":
        trace = synthetic_trace(scenario, seed, rounds, payload_bytes)
    elif kind == "control":
        trace = control_trace(link_model, scenario, payload_bytes, rounds, seed)
    else:
        trace = run_ns3_worker(scenario, payload_bytes, rounds, seed, timeout_s, progress, directory)
    store(trace, directory, inputs)
    chunks.remove_chunks(directory)
    return trace, False


def missing_chunks(link_model: str, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int,
                   seed: int, cache_dir: Path, barrier: Plan | None = None) -> list[int]:
    """The chunks of this request's ns-3 trace (a ladder rung's: its source's) still to simulate; none when the
    trace is not chunked, not from ns-3 or cached already. A sweep runs them as tasks before the join."""
    if not scenario.trace_chunk_rounds or barrier is not None or not LINK_MODELS[link_model].from_ns3:
        return []
    directory = Path(cache_dir) / trace_key("ns3", scenario, payload_bytes, rounds, seed)
    if (directory / "meta.json").exists():
        return []
    count = len(chunks.chunk_ranges(rounds, scenario.trace_chunk_rounds))
    return [chunk for chunk in range(count) if not chunks.chunk_done(directory, chunk)]


def make_ns3_chunk(scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int, seed: int, chunk: int,
                   cache_dir: Path, timeout_s: float = 3600.0, progress: Progress = None) -> None:
    """Simulate one chunk of the ns-3 trace of this request into the cache (``bridge.chunks``)."""
    directory = Path(cache_dir) / trace_key("ns3", scenario, payload_bytes, rounds, seed)
    chunks.make_chunk(scenario, payload_bytes, rounds, seed, chunk, directory, timeout_s, progress)


def run_ns3_worker(scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int, seed: int,
                   timeout_s: float, progress: Progress = None, directory: Path | None = None) -> LinkTrace:
    """Simulate every exchange of every round in one ns-3 process (or, with ``trace_chunk_rounds``, chunk by
    chunk, each cached beside ``directory`` until the join: ``bridge.chunks``) and wrap it as a LinkTrace."""
    senders = [exchange_senders(scenario, e, payload) for e, payload in enumerate(payload_bytes)]
    if scenario.trace_chunk_rounds:
        for chunk in range(len(chunks.chunk_ranges(rounds, scenario.trace_chunk_rounds))):
            chunks.make_chunk(scenario, payload_bytes, rounds, seed, chunk, directory, timeout_s, progress)
        raw, stats = chunks.join_chunks(scenario, payload_bytes, rounds, seed, directory)
    else:
        request = {"scenario": asdict(scenario), "seed": seed, "slot_payloads": senders * rounds}
        raw, stats = _worker_result(request, scenario, seed, timeout_s, progress)
    exchanges = len(payload_bytes)
    per_slot = {name: raw[name].reshape(rounds, exchanges, *raw[name].shape[1:]) for name in SLOT_FIELDS}
    return LinkTrace(
        **{name: per_slot[name] for name in SLOT_ARRAYS},
        sender_bytes=np.broadcast_to(np.array(senders, dtype=np.int64), (rounds, *np.shape(senders))).copy(),
        positions=per_slot["positions"][:, 0],
        idle_delivered=raw["idle_delivered"],
        idle_rate=raw["idle_rate"],
        payload_bytes=tuple(payload_bytes),
        deadline_s=scenario.deadline_s,
        datagram_bytes=scenario.datagram_bytes,
        meta=dict(stats, link_model="ns3", mode="offline", rounds=rounds),
    )
