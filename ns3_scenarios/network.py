"""One ns-3 ad-hoc network in this process: calibrate, build, probe, then simulate exchanges in order.

Only worker processes import this module's ns-3 side (``ns3_loader.load``).
A slot is one exchange of one round: slot ``r * E + e``. Slots start
``slot_period_s`` apart in simulated time whether or not they are used, so a
slot's start time depends only on its index.

Density: without fading the placement is geometric (exact for the disc model)
and the idle probe confirms it. With fading a pair delivers only with some
probability, so the side of the square is calibrated by measurement: bisection
on the side, each candidate a fresh simulation with the same seed (the fading
draws are the same for every candidate, so the measured density falls
monotonically with the side) that runs the idle probe.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Sequence

import numpy as np

from ns3_scenarios import ns3_loader
from ns3_scenarios.airtime import frame_s
from ns3_scenarios.scenario import (ARRIVAL_FIELDS, Placement, ScenarioConfig, decode_arrivals, decode_slot,
                                    place_devices, slot_layout)

# Diagnostic only: "ns3::MapScheduler" runs ns-3's own event queue instead of PrunedMapScheduler
# (adhoc_network.h, "Memory"), to check that pruning changes no result. Not a scenario field: no trace key depends on it.
SCHEDULER_ENV = "NSDML_NS3_SCHEDULER"
CALIBRATION_STEPS = 24
CALIBRATION_TOLERANCE = 0.005  # stop when the measured idle density is this close to the target


def idle_neighbours(counts: np.ndarray, probes: int, access_point: bool = False) -> np.ndarray:
    """A pair is in range when j received at least half of i's idle probes (all of one). With an access point
    only the links to and from it count (what stations hear of each other is relayed by it)."""
    heard = (counts > 0) & (2 * counts >= probes)
    if access_point:
        heard[:-1, :-1] = False
    return heard


def to_vector(cpp, kind: str, values) -> object:
    convert = float if kind == "double" else int
    return cpp.std.vector[kind]([convert(v) for v in values])


def to_numpy(flat) -> np.ndarray:
    view = flat.data()
    view.reshape((flat.size(),))
    return np.frombuffer(view, dtype=np.float64, count=flat.size()).copy()


def build_network(cpp, config: ScenarioConfig, seed: int, positions: np.ndarray, side_m: float,
                  chunk: int = 0) -> object:
    params = cpp.nsdml.NetworkParams()
    params.x = to_vector(cpp, "double", positions[:, 0])
    params.y = to_vector(cpp, "double", positions[:, 1])
    params.sideM = side_m
    params.phyMode = config.phy_mode
    params.txPowerDbm = config.tx_power_dbm
    params.rateControl = config.rate_control
    params.fading = config.fading
    params.nakagamiM = config.nakagami_m
    params.channel = "yans" if config.channel == "yans" else "spectrum"
    params.maxLossDb = config.max_loss_db
    params.mobility = config.mobility
    params.speedMps = config.speed_mps
    params.pauseS = config.pause_s
    params.transport = config.transport
    params.accessPoint = config.access_point
    params.fanout = config.fanout
    params.datagramBytes = config.datagram_bytes
    params.slotPeriodS = config.slot_period_s
    params.deadlineS = config.deadline_s
    params.startJitterS = config.start_jitter_s
    params.datagramIntervalS = config.datagram_interval_s
    params.supplyVoltageV = config.supply_voltage_v
    params.txCurrentA = config.tx_current_a
    params.rxCurrentA = config.rx_current_a
    params.idleCurrentA = config.idle_current_a
    params.sleepCurrentA = config.sleep_current_a
    params.radioSleep = config.radio_sleep
    if config.jammer_duty_cycle > 0:  # one junk frame per frame airtime / duty cycle, carrier sense permitting
        params.jammerX, params.jammerY = config.jammer_x * side_m, config.jammer_y * side_m
        params.jammerIntervalS = frame_s(config.datagram_bytes, config.phy_mode, False) / config.jammer_duty_cycle
    if config.babblers:
        params.babblers = to_vector(cpp, "uint32_t", config.babblers)
        params.babbleIntervalS = frame_s(config.datagram_bytes, config.phy_mode, False) / config.babble_duty_cycle
    params.seed = 1
    params.run = seed + 1
    params.chunk = chunk
    params.scheduler = os.environ.get(SCHEDULER_ENV) or params.scheduler
    names, sizes = slot_layout(config.nodes)
    params.slotFields = cpp.std.vector["std::string"](names)
    params.slotSizes = to_vector(cpp, "uint32_t", sizes)
    params.arrivalFields = cpp.std.vector["std::string"](list(ARRIVAL_FIELDS))
    return cpp.nsdml.AdhocNetwork(params)


def measure_idle_density(cpp, config: ScenarioConfig, seed: int, positions: np.ndarray, side_m: float) -> float:
    """Idle density of a static network at these positions: a fresh simulation, probed, destroyed."""
    network = build_network(cpp, replace(config, mobility="static"), seed, positions, side_m)
    try:
        counts = to_numpy(network.Probe(config.idle_probes)).reshape(config.nodes, config.nodes)
    finally:
        network.Destroy()
    n = config.devices
    return float(counts.sum() / (config.idle_probes * n * (n - 1)))


def calibrated_placement(cpp, config: ScenarioConfig, seed: int) -> tuple[Placement, dict]:
    """The geometric placement, or (with fading) the same layout scaled until the measured density hits the target."""
    geometric = place_devices(config, seed)
    if config.fading == "none":
        return geometric, {"calibration": "geometric", "calibration_steps": 0}
    unit = geometric.positions_m / geometric.side_m
    low, high = geometric.side_m / 8, geometric.side_m * 8  # density(low) >= target >= density(high)
    best = (math.inf, geometric.side_m)
    steps = 0
    for steps in range(1, CALIBRATION_STEPS + 1):
        side = math.sqrt(low * high)
        measured = measure_idle_density(cpp, config, seed, unit * side, side)
        best = min(best, (abs(measured - config.pair_density), side))
        if abs(measured - config.pair_density) <= CALIBRATION_TOLERANCE:
            break
        if measured > config.pair_density:
            low = side
        else:
            high = side
    side = best[1]
    positions = unit * side
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)[np.triu_indices(config.devices, k=1)]
    placement = Placement(positions, float(side), float(np.mean(distances < config.range_m)))
    return placement, {"calibration": "measured", "calibration_steps": steps,
                       "geometric_side_m": geometric.side_m}


def idle_density(idle_delivered: np.ndarray, counts: np.ndarray, config: ScenarioConfig) -> float:
    """Ad hoc: the fraction of ordered pairs' probes delivered. Access point: the coverage, the fraction of
    devices that hear the access point and are heard by it."""
    if config.access_point:
        return float(np.mean(idle_delivered[:-1, -1] & idle_delivered[-1, :-1]))
    n = config.nodes
    return float(counts.sum() / (config.idle_probes * n * (n - 1)))


class Network:
    """A live ns-3 simulation of one scenario: probed on construction, then stepped slot by slot."""

    def __init__(self, config: ScenarioConfig, seed: int, chunk: int = 0):
        """``chunk``: a trace chunk's index (its own traffic, MAC and fading draws; same placement and paths)."""
        self.config = config
        self._cpp = ns3_loader.load()
        self.placement, calibration = calibrated_placement(self._cpp, config, seed)
        self._network = build_network(self._cpp, config, seed, self.placement.positions_m, self.placement.side_m,
                                      chunk)
        n = config.nodes
        counts = to_numpy(self._network.Probe(config.idle_probes)).reshape(n, n)
        self.idle_rate = (counts / config.idle_probes).astype(np.float32)
        self.idle_delivered = idle_neighbours(counts, config.idle_probes, config.access_point)
        self._network.SetNeighbours(to_vector(self._cpp, "int", self.idle_delivered.ravel()))
        self.stats = {
            "ns3_version": ns3_loader.ns3_version(),
            "area_side_m": self.placement.side_m,
            "range_m": config.range_m,
            "geometric_density": self.placement.geometric_density,
            "idle_density": idle_density(self.idle_delivered, counts, config),
            "first_slot_s": float(self._network.FirstSlotS()),
            **calibration,
        }

    def run_slot(self, slot: int, payloads) -> dict[str, np.ndarray]:
        """Slot ``slot`` simulated: its SLOT_SCHEMA fields by name; a message not complete by the deadline
        has done_s NaN."""
        values = to_numpy(self._network.RunSlot(slot, to_vector(self._cpp, "uint32_t", payloads)))
        deadline_s = self.config.deadline_s

        def after_deadline_is_never(fields: dict) -> dict:
            done = fields["done_s"]
            return dict(fields, done_s=np.where((done >= 0) & (done <= deadline_s), done, np.nan))

        return decode_slot(values, self.config.nodes, after_deadline_is_never)

    def jammer(self) -> dict:
        """The jammer's junk frames sent and its radio's joules so far (none: zeros)."""
        return {"jammer_frames": int(self._network.JunkFrames()), "jammer_energy_j": float(self._network.JammerEnergyJ())}

    def source_depletion_j(self) -> np.ndarray:
        """(N,) joules each device's ns-3 energy source has lost so far (the check on the per-state split)."""
        return to_numpy(self._network.SourceDepletionJ())

    def run_slots_in_cpp(self, first: int, count: int, payloads) -> int:
        """Slots first .. first + count - 1 in one C++ call; only the number of ns-3 events comes back."""
        return int(self._network.RunSlotsInCpp(first, count, to_vector(self._cpp, "uint32_t", payloads)))

    def pruned_events(self) -> int:
        """Events PrunedMapScheduler has dropped in this process (0 under ns-3's own scheduler)."""
        return int(self._cpp.nsdml.PrunedMapScheduler.Pruned())

    def messages(self) -> "Ns3Messages":
        """This simulation behind the message core (``messages.network.Messages``)."""
        return Ns3Messages(self)

    def close(self) -> None:
        self._network.Destroy()


class Ns3Messages:
    """The message core on a live ns-3 network: a message goes to the sender's idle-probe neighbours, or as
    unicast copies to chosen ``targets``."""

    def __init__(self, network: Network):
        self._network, self._cpp = network._network, network._cpp
        self.nodes = network.config.nodes

    def now_s(self) -> float:
        return float(self._network.NowS())

    def send(self, sender: int, at_s: float, nbytes: int, step: int, exchange: int,
             targets: Sequence[int] | None = None) -> int:
        if targets is None:
            return int(self._network.SendMessage(int(sender), float(at_s), int(nbytes)))
        return int(self._network.SendMessageTo(int(sender), float(at_s), int(nbytes),
                                               to_vector(self._cpp, "uint32_t", [int(j) for j in targets])))

    def advance(self, until_s: float) -> list[tuple[int, int, float]]:
        arrivals = decode_arrivals(to_numpy(self._network.Advance(float(until_s))))
        return [(int(a["message"]), int(a["receiver"]), float(a["arrival_s"])) for a in arrivals]

    def sleep_between(self, device: int, from_s: float, until_s: float) -> None:
        self._network.SleepBetween(int(device), float(from_s), float(until_s))

    def radio_seconds(self) -> np.ndarray:
        return to_numpy(self._network.RadioSeconds()).reshape(self.nodes, -1)

    def retries(self) -> np.ndarray:
        return to_numpy(self._network.Retries())
