"""LinkTrace: who received whom, and when, in every exchange of every round.

Stored as ``trace.npz`` (read with ``allow_pickle=False``) beside ``meta.json``
(schema version, scenario, seed, payloads, ns-3 version, worker stats).
Convention: ``done_s[r, e, i, j]`` is the simulated time after the start of
exchange e of round r at which device j held device i's complete message, NaN
if it did not by the deadline. ``intended[r, e, i, j]``: i addressed j
(broadcast and unicast: j is one of i's idle-probe neighbours; fan-out: one of
the k drawn). ``sender_bytes[r, e, i]``: the payload i sent (-1: the exchange
was not used, online mode only). ``radio_s[r, e, i, k]``: seconds device i's
radio spent in state k (``messages.ledger.RADIO_STATES``: tx, rx, idle, sleep)
over what the run's clock counts of exchange e of round r: under rounds, from
the exchange's start to its clock end ``clock_end_s[r, e]`` (its last intended
message complete, else the deadline; ``radio_deadline_s`` to the deadline, so a
derived rung can cut the timeline at its own end, ``radio_window_s``); under a
barrier schedule, from the device's previous barrier to this one. From ns-3's
PHY state timeline (``source_deadline_j``: its energy sources' loss to the
deadline, the check), or the controls' airtime estimate. ``finished_s[r, e, i]``: under the local-barrier
schedule (``messages.schedules``), when device i passed the barrier of
exchange e of its step r, seconds since the schedule began; NaN under rounds,
whose clock the runner keeps (a round lasts its compute plus ``duration_s``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bridge.identity import arrays_sha256
from messages.ledger import between_cuts
from ns3_scenarios.scenario import SLOT_ARRAYS, SLOT_FIELDS

SCHEMA_VERSION = 6  # 3: radio_energy_j; 4: its sleep state, finished_s; 5: radio seconds at the clock's cuts; 6: retries
ARRAYS = (*SLOT_ARRAYS, "positions", "idle_delivered", "sender_bytes", "idle_rate", "finished_s")  # trace.npz
NOT_SENT = -1  # sender_bytes of an exchange the algorithm did not use


def current_umask() -> int:
    """The process's file-creation mask (read by setting it, so set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class TraceFormatError(ValueError):
    """A stored trace is truncated, from another schema, or inconsistent."""


class LinkTrace:
    """A trace: every ``SLOT_SCHEMA`` field but positions per (round, exchange), positions per round, and
    what was measured once (idle probe) or is the bridge's own (payloads, sender_bytes, deadline).

    Built with each slot field as a keyword (``done_s`` and ``rx_bytes`` required; a field not given is
    filled from its declaration: ``intended`` from the idle neighbours, the others with their ``fill``),
    and read as attributes (``trace.done_s``); ``fields()`` gives every constructor argument, so
    ``LinkTrace(**{**trace.fields(), "meta": meta})`` copies one with a change.
    """

    def __init__(self, *, positions: np.ndarray, idle_delivered: np.ndarray, payload_bytes: tuple[int, ...],
                 deadline_s: float, meta: dict | None = None, sender_bytes: np.ndarray | None = None,
                 idle_rate: np.ndarray | None = None, datagram_bytes: int = 1400,
                 finished_s: np.ndarray | None = None, **slot_arrays: np.ndarray):
        unknown = sorted(set(slot_arrays) - set(SLOT_ARRAYS))
        if unknown or "done_s" not in slot_arrays or "rx_bytes" not in slot_arrays:
            raise TypeError(f"LinkTrace: slot arrays {unknown} are not in SLOT_SCHEMA, or done_s / rx_bytes "
                            f"are missing")
        rounds, exchanges, n, n2 = np.shape(slot_arrays["done_s"])
        for name in SLOT_ARRAYS:
            if slot_arrays.get(name) is None:
                field = SLOT_FIELDS[name]
                shape = (rounds, exchanges, *field.shape(n))
                slot_arrays[name] = (np.broadcast_to(idle_delivered & ~np.eye(n, dtype=bool), shape).copy()
                                     if name == "intended" else np.full(shape, field.fill, dtype=field.dtype))
        self._slots = slot_arrays
        self.positions, self.idle_delivered = positions, idle_delivered
        self.payload_bytes, self.deadline_s = tuple(payload_bytes), deadline_s
        self.meta = {} if meta is None else meta
        self.sender_bytes = (np.broadcast_to(np.array(self.payload_bytes, dtype=np.int64)[None, :, None],
                                             (rounds, exchanges, n)).copy() if sender_bytes is None else sender_bytes)
        self.idle_rate = idle_delivered.astype(np.float32) if idle_rate is None else idle_rate
        self.datagram_bytes = datagram_bytes
        self.finished_s = np.full((rounds, exchanges, n), np.nan) if finished_s is None else finished_s
        wrong = [name for name in SLOT_ARRAYS
                 if np.shape(slot_arrays[name]) != (rounds, exchanges, *SLOT_FIELDS[name].shape(n))]
        if n != n2 or wrong or np.shape(positions) != (rounds, n, 2) or np.shape(idle_delivered) != (n, n) \
                or len(self.payload_bytes) != exchanges or np.shape(self.sender_bytes) != (rounds, exchanges, n) \
                or np.shape(self.idle_rate) != (n, n) or np.shape(self.finished_s) != (rounds, exchanges, n):
            raise TraceFormatError(f"inconsistent trace shapes: done_s {np.shape(slot_arrays['done_s'])}, "
                                   f"positions {np.shape(positions)}, {len(self.payload_bytes)} payloads"
                                   + (f", wrong: {', '.join(wrong)}" if wrong else ""))

    def __getattr__(self, name: str) -> np.ndarray:
        slots = self.__dict__.get("_slots", {})
        if name in slots:
            return slots[name]
        raise AttributeError(f"LinkTrace has no attribute {name!r}")

    def fields(self) -> dict:
        """Every constructor argument, by name."""
        return {**self._slots, "positions": self.positions, "idle_delivered": self.idle_delivered,
                "payload_bytes": self.payload_bytes, "deadline_s": self.deadline_s, "meta": self.meta,
                "sender_bytes": self.sender_bytes, "idle_rate": self.idle_rate,
                "datagram_bytes": self.datagram_bytes, "finished_s": self.finished_s}

    @property
    def local_barrier(self) -> bool:
        """Whether the trace is a local-barrier message log (each device on its own clock)."""
        return bool(np.isfinite(self.finished_s).any())

    def step_end_s(self, round_index: int, devices: np.ndarray) -> float:
        """Local barrier: when the last of ``devices`` (bool mask) passed the last barrier of step
        ``round_index``, seconds since the schedule began."""
        ends = self.finished_s[round_index, -1, :len(devices)]
        return float(ends[devices].max() if devices.any() else ends.max())

    def exchange_end_s(self, round_index: int, exchange: int) -> float:
        """How long exchange ``exchange`` of round ``round_index`` lasts on the run's clock: until its last
        intended message arrived if every intended message arrived by the deadline, else the deadline."""
        done = self.done_s[round_index, exchange][self.intended[round_index, exchange]]
        complete = done.size > 0 and not np.isnan(done).any()
        return float(done.max()) if complete else self.deadline_s

    def radio_window_s(self, round_index: int, exchange: int, window_s: float) -> np.ndarray:
        """(N, 4) the radios' seconds per state over the first ``window_s`` of a rounds exchange, from the
        timeline recorded at its cuts (clock end, deadline; ``messages.ledger.between_cuts``)."""
        cuts = np.array([self.clock_end_s[round_index, exchange], self.deadline_s])
        at_cuts = np.stack([self.radio_s[round_index, exchange], self.radio_deadline_s[round_index, exchange]])
        order = np.argsort(cuts, kind="stable")
        return between_cuts(cuts[order], at_cuts[order], window_s)

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
        staging.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; a cache entry is as readable as any file
        try:
            arrays = {name: np.asarray(getattr(self, name)) for name in ARRAYS}
            np.savez(staging / "trace.npz", **arrays)
            meta = dict(self.meta, schema_version=SCHEMA_VERSION, payload_bytes=list(self.payload_bytes),
                        deadline_s=self.deadline_s, datagram_bytes=self.datagram_bytes,
                        arrays_sha256=arrays_sha256(arrays))
            (staging / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> "LinkTrace":
        """Read a stored trace; anything truncated, damaged or of another schema is a TraceFormatError."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / "meta.json").read_text())
            if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
                version = meta.get("schema_version") if isinstance(meta, dict) else meta
                raise TraceFormatError(f"trace in {directory} has schema {version!r}, expected {SCHEMA_VERSION}")
            with np.load(directory / "trace.npz", allow_pickle=False) as arrays:
                loaded = {name: arrays[name] for name in ARRAYS}
            if meta.get("arrays_sha256") != arrays_sha256(loaded):
                raise TraceFormatError(f"trace in {directory}: its arrays do not match the SHA-256 in its meta.json "
                                       f"(edited or damaged)")
            payload_bytes = tuple(int(b) for b in meta["payload_bytes"])
            deadline_s, datagram_bytes = meta["deadline_s"], meta["datagram_bytes"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (deadline_s, datagram_bytes)):
                raise TraceFormatError(f"trace in {directory}: deadline_s {deadline_s!r} or datagram_bytes "
                                       f"{datagram_bytes!r} is not a number")
            return cls(**loaded, payload_bytes=payload_bytes, deadline_s=float(deadline_s),
                       datagram_bytes=int(datagram_bytes), meta=meta)
        except TraceFormatError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as error:
            raise TraceFormatError(f"unreadable trace in {directory}: {type(error).__name__}: {error}") from error


def per_sender(payload_bytes: int | Sequence[int], devices: int) -> np.ndarray:
    """An exchange's payload as (N,) int64 bytes per sender: one int for all, or one per device (each >= 0; 0: it sends nothing)."""
    if isinstance(payload_bytes, (int, np.integer)):
        values = np.full(devices, int(payload_bytes), dtype=np.int64)
    else:
        values = np.asarray(list(payload_bytes))
        if values.shape != (devices,) or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"payload_bytes: expected an int or {devices} ints (one per sender), "
                             f"got {payload_bytes!r}")
        values = values.astype(np.int64)
    if (values < 0).any() or (values >= 2**31).any() or not values.any():
        raise ValueError(f"payload_bytes: every sender's payload must be in [0, 2**31) (0: it sends nothing), "
                         f"and one at least positive, got {values.tolist()}")
    return values


class RoundLinks:
    """The ``Links`` an algorithm sees in one round: exchanges are handed out in order.

    Each exchange must carry the payload the trace was simulated with, so an
    algorithm cannot silently replay a trace made for another message size.
    ``exchange`` takes one int (every sender's payload) or one int per sender;
    offline traces need them all equal (per-sender payloads need online mode).
    """

    def __init__(self, trace: LinkTrace, round_index: int):
        self._trace = trace
        self._round = round_index
        self.used = 0

    def exchange(self, payload_bytes: int | Sequence[int]) -> torch.Tensor:
        e = self._next_exchange()
        sent = per_sender(payload_bytes, self._trace.devices)
        expected = self._trace.sender_bytes[self._round, e]
        if not np.array_equal(sent, expected):
            shown = int(sent[0]) if (sent == sent[0]).all() else sent.tolist()
            raise RuntimeError(f"round {self._round}, exchange {e}: the algorithm sends {shown} bytes "
                               f"but the trace was simulated for {self._trace.payload_bytes[e]}"
                               f" (per-sender or changing payloads need network.mode = \"online\")")
        self.used += 1
        return torch.from_numpy(self._trace.delivered(self._round, e))

    def _next_exchange(self) -> int:
        if self.used >= self._trace.exchanges:
            raise RuntimeError(f"round {self._round}: the algorithm asked for exchange {self.used + 1}, "
                               f"the trace has {self._trace.exchanges} per round")
        return self.used

    @property
    def duration_s(self) -> float:
        """Simulated time of the exchanges used (``LinkTrace.exchange_end_s``)."""
        return float(sum(self.windows_s))

    @property
    def windows_s(self) -> list[float]:
        """Each used exchange's length on the run's clock."""
        return [self._trace.exchange_end_s(self._round, e) for e in range(self.used)]
