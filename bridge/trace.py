"""LinkTrace: who received whom, and when, in every exchange of every round.

Stored as ``trace.npz`` (read with ``allow_pickle=False``) beside ``meta.json``
(schema version, scenario, seed, payloads, ns-3 version, worker stats).
Convention: ``done_s[r, e, i, j]`` is the simulated time after the start of
exchange e of round r at which device j held device i's complete message, NaN
if it did not by the deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SCHEMA_VERSION = 1
ARRAYS = ("done_s", "rx_bytes", "positions", "idle_delivered")


class TraceFormatError(ValueError):
    """A stored trace is truncated, from another schema, or inconsistent."""


@dataclass(frozen=True)
class LinkTrace:
    done_s: np.ndarray  # (R, E, N, N) float32, NaN = not delivered by the deadline
    rx_bytes: np.ndarray  # (R, E, N, N) int64 application bytes received
    positions: np.ndarray  # (R, N, 2) float32 metres
    idle_delivered: np.ndarray  # (N, N) bool: pairs that deliver on a quiet channel
    payload_bytes: tuple[int, ...]  # per exchange of a round
    deadline_s: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        rounds, exchanges, n, n2 = self.done_s.shape
        if n != n2 or self.rx_bytes.shape != self.done_s.shape or self.positions.shape != (rounds, n, 2) \
                or self.idle_delivered.shape != (n, n) or len(self.payload_bytes) != exchanges:
            raise TraceFormatError(f"inconsistent trace shapes: done_s {self.done_s.shape}, rx_bytes "
                                   f"{self.rx_bytes.shape}, positions {self.positions.shape}, "
                                   f"{len(self.payload_bytes)} payloads")

    @property
    def rounds(self) -> int:
        return self.done_s.shape[0]

    @property
    def exchanges(self) -> int:
        return self.done_s.shape[1]

    @property
    def devices(self) -> int:
        return self.done_s.shape[2]

    def delivered(self, round_index: int, exchange: int = 0) -> np.ndarray:
        """(N, N) bool: delivered[i, j] = j held i's complete message before the deadline."""
        return ~np.isnan(self.done_s[round_index, exchange])

    def round_links(self, round_index: int) -> "RoundLinks":
        return RoundLinks(self, round_index)

    def save(self, directory: Path) -> None:
        """Write atomically: a reader sees the whole trace or no trace at all."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            np.savez(staging / "trace.npz", done_s=self.done_s, rx_bytes=self.rx_bytes,
                     positions=self.positions, idle_delivered=self.idle_delivered)
            meta = dict(self.meta, schema_version=SCHEMA_VERSION, payload_bytes=list(self.payload_bytes),
                        deadline_s=self.deadline_s)
            (staging / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> "LinkTrace":
        directory = Path(directory)
        try:
            meta = json.loads((directory / "meta.json").read_text())
            with np.load(directory / "trace.npz", allow_pickle=False) as arrays:
                loaded = {name: arrays[name] for name in ARRAYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise TraceFormatError(f"unreadable trace in {directory}: {error}") from error
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise TraceFormatError(f"trace in {directory} has schema {meta.get('schema_version')}, "
                                   f"expected {SCHEMA_VERSION}")
        return cls(**loaded, payload_bytes=tuple(meta["payload_bytes"]), deadline_s=float(meta["deadline_s"]),
                   meta=meta)


class RoundLinks:
    """The ``Links`` an algorithm sees in one round: exchanges are handed out in order.

    Each exchange must carry the payload the trace was simulated with, so an
    algorithm cannot silently replay a trace made for another message size.
    """

    def __init__(self, trace: LinkTrace, round_index: int):
        self._trace = trace
        self._round = round_index
        self.used = 0

    def exchange(self, payload_bytes: int) -> torch.Tensor:
        e = self.used
        if e >= self._trace.exchanges:
            raise RuntimeError(f"round {self._round}: the algorithm asked for exchange {e + 1}, "
                               f"the trace has {self._trace.exchanges} per round")
        expected = self._trace.payload_bytes[e]
        if payload_bytes != expected:
            raise RuntimeError(f"round {self._round}, exchange {e}: the algorithm sends {payload_bytes} bytes "
                               f"but the trace was simulated for {expected}")
        self.used += 1
        return torch.from_numpy(self._trace.delivered(self._round, e))

    @property
    def duration_s(self) -> float:
        """Simulated time of the exchanges used: the deadline, or the last completion if every pair delivered."""
        total = 0.0
        n = self._trace.devices
        off_diagonal = ~np.eye(n, dtype=bool)
        for e in range(self.used):
            done = self._trace.done_s[self._round, e][off_diagonal]
            total += float(done.max()) if not np.isnan(done).any() else self._trace.deadline_s
        return total
