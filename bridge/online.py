"""Online mode: payloads that depend on training state, simulated exchange by exchange by a long-lived worker.

The learner passes each exchange's per-sender payload bytes; a worker process
(``python -m ns3_scenarios.worker --serve``) keeps ONE ns-3 simulation alive
and steps it slot by slot, answering with that exchange's completion times and
bytes. The result fills the same LinkTrace shape as offline mode.

Cache rule. Online traces live under ``<cache>/online-<key of scenario, seed,
exchanges per round>/<hash of the payloads actually sent>/``. A run replays a
cached online trace exchange by exchange for as long as it sends the same
per-sender payloads, in the same order, as that trace did (ns-3 does not
start). At the first exchange that no cached trace matches, the worker starts,
re-simulates the exchanges sent so far (the simulation is deterministic, so it
reproduces the replayed results; a mismatch is an error) and carries on live.
When the run ends, a trace with any live exchange is cached under the hash of
its payload sequence. So a rerun of the same config reuses the cache without
ns-3 only if the algorithm sends the same payloads again.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bridge.worker import WorkerProcess, describe_worker
from bridge.trace import NOT_SENT, SCHEMA_VERSION, LinkTrace, RoundLinks, TraceFormatError, per_sender
from ns3_scenarios.scenario import SLOT_ARRAYS, SLOT_FIELDS, ScenarioConfig, decode_slot, scenario_identity


def family_key(scenario: ScenarioConfig, exchanges: int, seed: int) -> str:
    canonical = json.dumps({"schema": SCHEMA_VERSION, "mode": "online", "link_model": "ns3",
                            "scenario": scenario_identity(scenario), "exchanges": exchanges, "seed": seed}, sort_keys=True)
    return "online-" + hashlib.sha256(canonical.encode()).hexdigest()[:20]


def sequence_key(sent: np.ndarray) -> str:
    """Hash of the payloads sent, (slots, N), trailing unused slots dropped."""
    used = np.flatnonzero((sent != NOT_SENT).any(axis=1))
    prefix = sent[:used[-1] + 1] if used.size else sent[:0]
    return hashlib.sha256(np.ascontiguousarray(prefix, dtype=np.int64).tobytes()).hexdigest()[:20]


class _Candidate:
    """A cached online trace of the same scenario, still matching what this run has sent."""

    def __init__(self, directory: Path, sent: np.ndarray):
        self.directory = directory
        self.sent = sent  # (slots, N); the whole trace is loaded only when it is replayed
        self._trace: LinkTrace | None = None

    @property
    def trace(self) -> LinkTrace:
        if self._trace is None:
            self._trace = LinkTrace.load(self.directory)
        return self._trace


def _candidates(family: Path, devices: int) -> list[_Candidate]:
    """Cached online traces of this scenario whose payload record loads."""
    found = []
    for directory in sorted(family.glob("[!.]*")):
        try:
            with np.load(directory / "trace.npz", allow_pickle=False) as arrays:
                sent = arrays["sender_bytes"]
            candidate = _Candidate(directory, sent.reshape(-1, devices))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue
        found.append(candidate)
    return found


class OnlineLinks:
    """The run's link source in online mode; ``round_links(r)`` gives the algorithm its ``Links``."""

    def __init__(self, scenario: ScenarioConfig, payload_bytes: tuple[int, ...], rounds: int, seed: int,
                 cache_dir: Path, timeout_s: float):
        self._scenario = scenario
        self._seed = seed
        self._timeout_s = timeout_s
        self._exchanges = len(payload_bytes)
        self._family = Path(cache_dir) / family_key(scenario, self._exchanges, seed)
        self._candidates = _candidates(self._family, scenario.nodes)
        self._worker: WorkerProcess | None = None
        self._next_slot = 0
        self.simulated = 0
        self.replayed = 0
        n, shape = scenario.nodes, (rounds, self._exchanges)
        first = self._replayable()
        if first is not None:  # same scenario and seed: same placement and idle probe
            idle_delivered, idle_rate = first.idle_delivered, first.idle_rate
            meta = {k: v for k, v in first.meta.items() if k not in ("simulated", "replayed")}
        else:
            hello = self._start_worker()
            idle_delivered = np.array(hello["idle_delivered"], dtype=bool).reshape(n, n)
            idle_rate = np.array(hello["idle_rate"], dtype=np.float32).reshape(n, n)
            meta = dict(hello["stats"], link_model="ns3", mode="online", rounds=rounds)
        empty = {name: np.full((*shape, *SLOT_FIELDS[name].shape(n)), SLOT_FIELDS[name].fill,
                               dtype=SLOT_FIELDS[name].dtype) for name in SLOT_ARRAYS}  # filled slot by slot
        self.trace = LinkTrace(
            **empty, positions=np.zeros((rounds, n, 2), dtype=np.float32),
            idle_delivered=idle_delivered, idle_rate=idle_rate,
            sender_bytes=np.full((*shape, n), NOT_SENT, dtype=np.int64),
            payload_bytes=tuple(payload_bytes), deadline_s=scenario.deadline_s,
            datagram_bytes=scenario.datagram_bytes, meta=meta,
        )

    def describe(self) -> str:
        if self._worker is not None:
            return "online: ns-3 worker started, simulating each exchange as the algorithm sends it"
        return (f"online: {len(self._candidates)} cached payload sequence(s) for this scenario; replaying while "
                f"the payloads match")

    def round_links(self, round_index: int) -> "OnlineRoundLinks":
        return OnlineRoundLinks(self, round_index)

    def simulate(self, round_index: int, exchange: int, sent: np.ndarray) -> None:
        """Fill exchange ``exchange`` of round ``round_index`` of the trace: from the cache or from ns-3."""
        slot = round_index * self._exchanges + exchange
        if slot < self._next_slot:
            raise RuntimeError(f"online exchanges go forward: round {round_index}, exchange {exchange} came after "
                               f"a later one")
        flat_sent = self.trace.sender_bytes.reshape(-1, self._scenario.nodes)
        flat_sent[slot] = sent
        window = slice(self._next_slot, slot + 1)
        self._candidates = [c for c in self._candidates
                            if c.sent.shape[0] > slot and np.array_equal(c.sent[window], flat_sent[window])]
        cached = self._replayable()
        if cached is not None:
            self._fill(slot, {name: getattr(cached, name)[round_index, exchange] for name in SLOT_ARRAYS},
                       cached.positions[round_index])
            self.replayed += 1
        else:
            worker = self._worker or self._resume_worker(slot)
            self._fill(slot, self._ask(worker, slot, sent), None)
            self.simulated += 1
        self._next_slot = slot + 1

    def _replayable(self) -> LinkTrace | None:
        """The first matching cached trace that loads; damaged entries are dropped (a new run overwrites them)."""
        while self._candidates:
            try:
                return self._candidates[0].trace
            except TraceFormatError:
                self._candidates.pop(0)
        return None

    def finish(self) -> bool:
        """Stop the worker and cache what it simulated; returns True when ns-3 did not run at all."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self.simulated == 0:
            return True
        sent = self.trace.sender_bytes.reshape(-1, self._scenario.nodes)
        meta = dict(self.trace.meta, simulated=self.simulated, replayed=self.replayed)
        LinkTrace(**{**self.trace.fields(), "meta": meta}).save(self._family / sequence_key(sent))
        return False

    def _start_worker(self) -> dict:
        hello = {"scenario": asdict(self._scenario), "seed": self._seed}
        self._worker = WorkerProcess(hello, describe_worker(self._scenario, self._seed), self._timeout_s)
        return self._worker.hello

    def _resume_worker(self, slot: int) -> WorkerProcess:
        """Start ns-3 mid-run: re-simulate the slots replayed so far, which must reproduce the cached results."""
        self._start_worker()
        sent = self.trace.sender_bytes.reshape(-1, self._scenario.nodes)
        for earlier in range(slot):
            if (sent[earlier] == NOT_SENT).all():
                continue
            again = self._ask(self._worker, earlier, sent[earlier])
            r, e = divmod(earlier, self._exchanges)
            if not (np.array_equal(again["done_s"], self.trace.done_s[r, e], equal_nan=True)
                    and np.array_equal(again["rx_bytes"], self.trace.rx_bytes[r, e])):
                raise TraceFormatError(f"the cached online trace in {self._family} does not reproduce: round {r}, "
                                       f"exchange {e} differs when re-simulated; delete it")
        return self._worker

    def _ask(self, worker: WorkerProcess, slot: int, sent: np.ndarray) -> dict:
        answer = worker.ask({"slot": slot, "payloads": [int(b) for b in sent]})
        return decode_slot(answer, self._scenario.nodes)

    def _fill(self, slot: int, values: dict, positions: np.ndarray | None) -> None:
        r, e = divmod(slot, self._exchanges)
        for name in SLOT_ARRAYS:
            getattr(self.trace, name)[r, e] = values[name]
        if e == 0:
            self.trace.positions[r] = values["positions"] if positions is None else positions


class OnlineMessages:
    """The message core (``messages.network.Messages``) on a long-lived ns-3 worker, request by request:
    the online counterpart of the offline worker's ``Ns3Messages``, for schedules whose sends depend on what
    has arrived (every message to the sender's idle-probe neighbours)."""

    def __init__(self, scenario: ScenarioConfig, seed: int, timeout_s: float = 3600.0):
        hello = {"scenario": asdict(scenario), "seed": seed}
        self._worker = WorkerProcess(hello, describe_worker(scenario, seed), timeout_s)
        self.nodes = scenario.nodes
        n = self.nodes
        self.idle_delivered = np.array(self._worker.hello["idle_delivered"], dtype=bool).reshape(n, n)
        self._now, self._radio_s, self._retries = 0.0, np.zeros((n, 4)), np.zeros(n)
        self._ask({"advance": 0.0})

    def _ask(self, request: dict) -> dict:
        answer = self._worker.ask(request)
        self._now, self._radio_s = float(answer["now_s"]), np.array(answer["radio_s"]).reshape(self.nodes, -1)
        self._retries = np.array(answer["retries"], dtype=float)
        return answer

    def now_s(self) -> float:
        return self._now

    def send(self, sender: int, at_s: float, nbytes: int, step: int, exchange: int,
             targets: Sequence[int] | None = None) -> int:
        request: dict = {"send": [int(sender), float(at_s), int(nbytes)]}
        if targets is not None:
            request["targets"] = [int(j) for j in targets]
        return int(self._ask(request)["number"])

    def advance(self, until_s: float) -> list[tuple[int, int, float]]:
        return [(int(m), int(r), float(t)) for m, r, t in self._ask({"advance": float(until_s)})["arrivals"]]

    def sleep_between(self, device: int, from_s: float, until_s: float) -> None:
        self._ask({"sleep": [int(device), float(from_s), float(until_s)]})

    def radio_seconds(self) -> np.ndarray:
        return self._radio_s.copy()

    def retries(self) -> np.ndarray:
        return self._retries.copy()

    def close(self) -> None:
        self._worker.close()


class OnlineRoundLinks(RoundLinks):
    """One round's ``Links`` in online mode: each exchange is simulated when the algorithm asks for it."""

    def __init__(self, source: OnlineLinks, round_index: int):
        super().__init__(source.trace, round_index)
        self._source = source

    def exchange(self, payload_bytes: int | Sequence[int]) -> torch.Tensor:
        e = self._next_exchange()
        self._source.simulate(self._round, e, per_sender(payload_bytes, self._trace.devices))
        self.used += 1
        return torch.from_numpy(self._trace.delivered(self._round, e))
