"""An ns-3 trace of synchronous rounds made as independent time chunks, simulated side by side, then joined.

``network.trace_chunk_rounds = K`` splits a trace of R rounds into chunks of K
rounds. Chunk c is its own ns-3 simulation of rounds [cK, cK + K): the same
placement (and, with fading, the same calibrated side), the idle probe run
again, then the idle network runs on to the chunk's first slot, so mobile
devices are where the serial simulation would have them (the mobility
streams are the serial run's). Every other random stream (backoffs, start
jitter, fading, fan-out draws) is shifted by the chunk index, so a chunk is
reproducible on its own and independent of the others; chunk 0 equals the
first K rounds of the serial trace exactly.

What differs from one long simulation: each chunk's first slot starts on a
quiet channel (in the serial trace a frame of the previous slot's drain may
still be queued), and the chunks' draws are independent where the serial
trace's continue one stream. tests/test_chunks.py measures the difference
(per-pair delivery rates and completion times) against the serial trace.

Each finished chunk is cached on its own (``<trace key>.chunks/<c>``) before
the join, so an interrupted trace resumes with the chunks it lacks; a sweep
hands the chunks of every trace to its process pool or Ray cluster as
separate tasks (``chunk_tasks``), then the join finds them all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bridge import worker
from bridge.trace import current_umask
from bridge.worker import Progress, WorkerError, describe_worker
from ns3_scenarios.scenario import SLOT_FIELDS, ScenarioConfig, exchange_senders

CHUNK_FILES = ("arrays.npz", "worker.json")


def chunk_ranges(rounds: int, chunk_rounds: int) -> list[tuple[int, int]]:
    """(first round, rounds) of each chunk; the last may be shorter. chunk_rounds 0: one chunk."""
    size = chunk_rounds or rounds
    return [(first, min(size, rounds - first)) for first in range(0, rounds, size)]


def chunks_dir(trace_dir: Path) -> Path:
    return trace_dir.with_name(trace_dir.name + ".chunks")


def chunk_done(trace_dir: Path, chunk: int) -> bool:
    return all((chunks_dir(trace_dir) / str(chunk) / name).is_file() for name in CHUNK_FILES)


def make_chunk(scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int, seed: int, chunk: int,
               trace_dir: Path, timeout_s: float, progress: Progress = None) -> None:
    """Simulate chunk ``chunk`` of the trace stored at ``trace_dir`` (nothing if it is cached already).
    Written atomically: a chunk directory holds a whole result or is absent."""
    if chunk_done(trace_dir, chunk):
        return
    first_round, count = chunk_ranges(rounds, scenario.trace_chunk_rounds)[chunk]
    senders = [exchange_senders(scenario, e, payload) for e, payload in enumerate(payload_bytes)]
    request = {"scenario": asdict(scenario), "seed": seed, "slot_payloads": senders * count,
               "first_slot": first_round * len(payload_bytes), "chunk": chunk}
    target = chunks_dir(trace_dir) / str(chunk)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{chunk}.", dir=target.parent))
    staging.chmod(0o777 & ~current_umask())
    try:
        (staging / "request.json").write_text(json.dumps(request))
        command = worker.worker_command(str(staging / "request.json"), str(staging))
        worker.run_offline(command, f"{describe_worker(scenario, seed)}, chunk {chunk}", timeout_s, progress)
        (staging / "request.json").unlink()
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def join_chunks(scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int, seed: int,
                trace_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The chunks' slot arrays end to end, as one worker's result (arrays, stats): idle probe and placement from
    chunk 0, events, frames and wall times summed, each chunk's own stats under "chunks"."""
    parts, stats = [], []
    for chunk in range(len(chunk_ranges(rounds, scenario.trace_chunk_rounds))):
        directory = chunks_dir(trace_dir) / str(chunk)
        try:
            stats.append(json.loads((directory / "worker.json").read_text()))
            with np.load(directory / "arrays.npz", allow_pickle=False) as arrays:
                parts.append({name: arrays[name] for name in arrays.files})
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise WorkerError(f"{describe_worker(scenario, seed)}: chunk {chunk} in {directory} is unreadable: "
                              f"{error}") from error
    joined = {name: np.concatenate([part[name] for part in parts]) for name in SLOT_FIELDS}
    joined.update(idle_delivered=parts[0]["idle_delivered"], idle_rate=parts[0]["idle_rate"])
    summed = ("events", "frames_sent", "pruned_events", "setup_seconds", "simulate_seconds")
    total = dict(stats[0], **{key: sum(part[key] for part in stats) for key in summed},
                 peak_rss_mb=max(part["peak_rss_mb"] for part in stats),
                 source_depletion_j=np.sum([part["source_depletion_j"] for part in stats], axis=0).tolist(),
                 chunks=[{key: part[key] for key in ("chunk", "first_slot", "events", "frames_sent", "peak_rss_mb",
                                                     "setup_seconds", "simulate_seconds")} for part in stats])
    total.pop("chunk"), total.pop("first_slot")
    return joined, total


def remove_chunks(trace_dir: Path) -> None:
    """After the joined trace is saved: its chunks are in it."""
    shutil.rmtree(chunks_dir(trace_dir), ignore_errors=True)
