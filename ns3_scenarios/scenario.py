"""The 802.11a scenarios, ad hoc and access point: their parameters and their geometry.

Pure Python (no ns-3 import), so configs can be validated and traces looked up
without starting ns-3.

Placement: N devices uniform at random in a square. The square's side is
chosen so that the fraction of ordered device pairs closer than the radio
range equals the target density, where the range is the distance at which the
received power falls to the preamble-detection threshold under ns-3's default
LogDistance model (exponent 3, 46.6777 dB at 1 m; -82 dBm threshold):
r = 10 ** ((tx_power_dbm + 82 - 46.6777) / 30), 51.4 m at the default 16.02 dBm.
The worker also *measures* the idle density in ns-3 (each device sends
``idle_probes`` probe datagrams on a quiet channel) and reports it. With
fading the disc model no longer holds: the worker then calibrates the side by
measurement (``ns3_scenarios.network``) and reports both densities.

Access point (``topology = "access_point"``): an infrastructure BSS, the
server at the centre of the square and the N devices placed uniformly as
above; the square is sized so that a fraction ``density`` of the devices lie
within the radio range of the access point (the *coverage*; the idle probe
measures it). The access point is node N, the last row and column of every
mask. Its exchanges alternate: even exchanges are the uplink (every device
sends to the access point, unicast with MAC ACKs and retries), odd ones the
downlink (the access point sends to every device it reaches: broadcast, or a
unicast copy each with ``transport = "unicast"``); ``exchange_senders`` is
that rule's one home.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from messages.ledger import RADIO_STATES

PHY_MODES = tuple(f"OfdmRate{rate}Mbps" for rate in (6, 9, 12, 18, 24, 36, 48, 54))
REFERENCE_LOSS_DB = 46.6777  # LogDistancePropagationLossModel default at 1 m (5.15 GHz)
PATH_LOSS_EXPONENT = 3.0
PREAMBLE_THRESHOLD_DBM = -82.0  # ThresholdPreambleDetectionModel::MinimumRssi default
# ns-3's noise floor at 20 MHz: thermal noise kTB at 290 K plus WifiPhy's default 7 dB noise figure.
NOISE_FLOOR_DBM = 10 * math.log10(1.380649e-23 * 290.0 * 20e6 * 1e3) + 7.0  # -93.97 dBm
# "yans": YansWifiChannel, a reception event at every PHY on the channel (the default; every earlier trace);
# "spectrum": SpectrumWifiPhy on a MultiModelSpectrumChannel, same loss models, every PHY still reached;
# "spectrum_pruned": the same channel with a cut-off (adhoc_network.h, LossCutoffFilter): a frame creates events
# only at PHYs whose mean received power is above it.
CHANNELS = ("yans", "spectrum", "spectrum_pruned")
MAX_UDP_PAYLOAD = 1472  # 1500-byte MTU minus IP and UDP headers
TRANSPORTS = ("broadcast", "unicast", "tcp")
RATE_CONTROLS = ("constant", "minstrel")
MOBILITY_MODELS = ("static", "random_walk", "random_waypoint")
FADING_MODELS = ("none", "nakagami")
SCENARIO_TOPOLOGIES = ("adhoc", "access_point")  # what ns-3 (and the ideal / random_graph controls) simulate
GRAPH_TOPOLOGIES = ("ring", "torus", "circulant", "star", "complete")  # fixed graphs (link_model fixed_graph)
TOPOLOGIES = SCENARIO_TOPOLOGIES + GRAPH_TOPOLOGIES


@dataclass(frozen=True)
class SlotField:
    """One field of what ns-3 reports for a slot (one exchange of one round): its name, what it is indexed by
    and its dtype. ``per``: "pair" (N, N) [sender, receiver]; "node" (N,); "node_xy" (N, 2) metres;
    "node_state" (N, len(RADIO_STATES)); "slot" a single number. ``fill``: its value where nothing was
    simulated (a control model that does not model it, an exchange not used)."""

    name: str
    per: str
    dtype: str
    fill: float = 0.0

    def shape(self, nodes: int) -> tuple[int, ...]:
        return {"pair": (nodes, nodes), "node": (nodes,), "node_xy": (nodes, 2),
                "node_state": (nodes, len(RADIO_STATES)), "slot": ()}[self.per]


# The slot record's one declaration. The C++ helper (adhoc_network.h) writes each field by its name into a
# SlotRecord laid out from this list (Python passes the names and sizes), the worker ships the fields by name,
# and the bridge's LinkTrace stores every field but the positions per (round, exchange); adding a field is a
# line here and the line in RunSlot that fills it.
SLOT_SCHEMA = (
    SlotField("rx_bytes", "pair", "int64"),  # application bytes j received from i by the end of the slot
    SlotField("done_s", "pair", "float32", math.nan),  # when j held i's whole message, s after the slot start
    SlotField("intended", "pair", "bool"),  # i addressed j
    SlotField("positions", "node_xy", "float32"),  # where each node was at the slot start
    # The radios' seconds per state (messages/ledger.py, RADIO_STATES) from the slot start to the exchange's
    # clock end (clock_end_s: its last addressed message complete, else the deadline), and to the deadline.
    SlotField("radio_s", "node_state", "float64"),
    SlotField("radio_deadline_s", "node_state", "float64"),
    SlotField("clock_end_s", "slot", "float64", math.nan),  # s after the slot start
    SlotField("source_deadline_j", "node", "float64", math.nan),  # ns-3's energy sources' loss, start to deadline
    SlotField("air_bytes", "slot", "int64"),  # PSDU bytes of every frame transmitted in the slot
    SlotField("frames", "slot", "int64"),  # frames transmitted
    SlotField("retries", "slot", "int64"),  # MAC retransmissions: unicast data frames sent again after a missing ACK
    SlotField("events", "slot", "int64"),  # ns-3 events executed
)
SLOT_FIELDS = {field.name: field for field in SLOT_SCHEMA}
# Stored per (round, exchange) in a LinkTrace; positions are kept per round (at its first exchange's start).
SLOT_ARRAYS = tuple(field.name for field in SLOT_SCHEMA if field.name != "positions")


# The message core's arrival record, declared once: the C++ helper's Advance writes each arrival's fields by
# name into a record laid out from this tuple (Python passes the names), and ``decode_arrivals`` reads them back.
ARRIVAL_FIELDS = ("message", "receiver", "arrival_s")  # message number, receiving node, simulated seconds


def decode_arrivals(flat: np.ndarray) -> list[dict[str, float]]:
    """Advance's flat result as one dict per arrival, by ``ARRIVAL_FIELDS``."""
    return [dict(zip(ARRIVAL_FIELDS, row)) for row in np.asarray(flat).reshape(-1, len(ARRIVAL_FIELDS))]


def slot_layout(nodes: int) -> tuple[list[str], list[int]]:
    """Field names and their sizes in doubles, in the order of the flat record RunSlot returns."""
    return [field.name for field in SLOT_SCHEMA], [int(np.prod(field.shape(nodes))) for field in SLOT_SCHEMA]


def decode_slot(flat, nodes: int, adjust=lambda fields: fields) -> dict[str, np.ndarray]:
    """The flat record of one slot (C++ doubles, or the online worker's JSON lists by name) as arrays of
    their declared dtypes; ``adjust`` sees the float64 values first (the worker's deadline cut-off)."""
    fields, offset = {}, 0
    for field, size in zip(SLOT_SCHEMA, slot_layout(nodes)[1]):
        values = flat[field.name] if isinstance(flat, dict) else flat[offset:offset + size]
        offset += size
        fields[field.name] = np.asarray(values, dtype=np.float64).reshape(field.shape(nodes))
    fields = adjust(fields)
    return {name: (values > 0 if SLOT_FIELDS[name].dtype == "bool" else values.astype(SLOT_FIELDS[name].dtype))
            for name, values in fields.items()}


@dataclass(frozen=True)
class ScenarioConfig:
    """Parameters of the ad-hoc scenario (units in the names); README "Config fields" documents each."""

    devices: int = 20
    density: float = 0.5
    # > 0: place the devices so that each has this many in range on average (the square grows with N, a device
    # hears a constant number of others); density is then derived (mean_neighbours / (devices - 1)).
    mean_neighbours: float = 0.0
    phy_mode: str = "OfdmRate24Mbps"
    tx_power_dbm: float = 16.0206
    datagram_bytes: int = 1400
    deadline_s: float = 1.5
    drain_s: float = 0.1
    start_jitter_s: float = 1.0
    datagram_interval_s: float = 0.005
    transport: str = "broadcast"
    fanout: int = 0  # 0: every neighbour; k: k random neighbours per exchange (unicast, tcp)
    rate_control: str = "constant"
    mobility: str = "static"
    speed_mps: float = 1.0
    pause_s: float = 0.0
    fading: str = "none"
    nakagami_m: float = 1.0
    idle_probes: int = 4
    channel: str = "yans"
    # spectrum_pruned: receivers whose mean power would fall this many dB below NOISE_FLOOR_DBM get no event. 7 dB puts
    # the cut-off at WifiPhy's RxSensitivity (-101 dBm), below which both PHYs ignore a signal entirely.
    cutoff_margin_db: float = 7.0
    # > 0: an ns-3 trace of synchronous rounds is simulated as independent chunks of this many rounds (in
    # parallel), then joined; see bridge/chunks.py. 0: one simulation from the first round to the last.
    trace_chunk_rounds: int = 0
    topology: str = "adhoc"  # "adhoc": devices placed in a square; a graph name: link_model = "fixed_graph"
    topology_degree: int = 2  # circulant: each device linked to its k nearest on each side of a ring
    # Radio energy: ns-3's WifiRadioEnergyModel and BasicEnergySource defaults (README "Energy" says where
    # they come from); the currents of an 802.11a radio in each state, at the supply voltage.
    supply_voltage_v: float = 3.0
    tx_current_a: float = 0.380
    rx_current_a: float = 0.313
    idle_current_a: float = 0.273  # also CCA busy and switching: the ledger's "idle" is one state
    sleep_current_a: float = 0.033
    # A radio with nothing left to send or receive sleeps (WifiRadioEnergyModel's SLEEP state) until it has.
    radio_sleep: bool = False
    # A jammer: one more 802.11a radio, not a device, at (jammer_x, jammer_y) x the square's side, sending junk
    # broadcast frames of datagram_bytes for this share of the time from the first slot on (0: none).
    jammer_duty_cycle: float = 0.0
    jammer_x: float = 0.5
    jammer_y: float = 0.5
    # Babblers: these devices also send junk broadcast frames for this share of the time, beside their messages,
    # through their own radios (a Byzantine device flooding the channel beyond its payload).
    babblers: tuple[int, ...] = ()
    babble_duty_cycle: float = 0.5

    def __post_init__(self) -> None:
        _check(isinstance(self.devices, int) and 2 <= self.devices <= 1000, "devices", self.devices,
               "an integer in [2, 1000]")
        _check(0.0 < self.density <= 1.0, "density", self.density, "a number in (0, 1]")
        _check(0.0 <= self.mean_neighbours <= self.devices - 1, "mean_neighbours", self.mean_neighbours,
               f"a number in [0, devices - 1 = {self.devices - 1}] (0: use density)")
        _check(self.mean_neighbours == 0.0 or self.density == 0.5, "density", self.density,
               "left out with mean_neighbours (the density follows from it)")
        _check(self.channel in CHANNELS, "channel", self.channel, "one of " + ", ".join(CHANNELS))
        _check(0.0 <= self.cutoff_margin_db <= 60.0, "cutoff_margin_db", self.cutoff_margin_db,
               "a number in [0, 60] (dB below the noise floor)")
        _check(isinstance(self.trace_chunk_rounds, int) and 0 <= self.trace_chunk_rounds <= 100_000,
               "trace_chunk_rounds", self.trace_chunk_rounds, "an integer in [0, 100000] (0: one simulation)")
        _check(self.phy_mode in PHY_MODES, "phy_mode", self.phy_mode, "one of " + ", ".join(PHY_MODES))
        _check(-10.0 <= self.tx_power_dbm <= 30.0, "tx_power_dbm", self.tx_power_dbm, "a number in [-10, 30]")
        _check(isinstance(self.datagram_bytes, int) and 64 <= self.datagram_bytes <= MAX_UDP_PAYLOAD,
               "datagram_bytes", self.datagram_bytes, f"an integer in [64, {MAX_UDP_PAYLOAD}]")
        _check(0.0 < self.deadline_s <= 60.0, "deadline_s", self.deadline_s, "a number in (0, 60]")
        _check(0.0 <= self.drain_s <= 10.0, "drain_s", self.drain_s, "a number in [0, 10]")
        _check(0.0 <= self.start_jitter_s < self.deadline_s, "start_jitter_s", self.start_jitter_s,
               "a number in [0, deadline_s)")
        _check(0.0 <= self.datagram_interval_s <= 1.0, "datagram_interval_s", self.datagram_interval_s,
               "a number in [0, 1]")
        _check(0.0 <= self.jammer_duty_cycle <= 1.0, "jammer_duty_cycle", self.jammer_duty_cycle,
               "a number in [0, 1] (the share of the time the jammer's radio sends junk; 0: no jammer)")
        for name in ("jammer_x", "jammer_y"):
            _check(0.0 <= getattr(self, name) <= 1.0, name, getattr(self, name),
                   "a number in [0, 1]: the jammer's position as a share of the square's side (inside the area)")
        if isinstance(self.babblers, list):  # a TOML array
            object.__setattr__(self, "babblers", tuple(self.babblers))
        _check(isinstance(self.babblers, tuple) and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < self.devices for d in self.babblers)
            and len(set(self.babblers)) == len(self.babblers), "babblers", self.babblers,
            f"distinct device indices in [0, devices - 1 = {self.devices - 1}]")
        _check(0.0 < self.babble_duty_cycle <= 1.0, "babble_duty_cycle", self.babble_duty_cycle,
               "a number in (0, 1] (the share of the time a babbler's radio sends junk)")
        _check(not self.babblers or not self.radio_sleep, "babblers", list(self.babblers),
               "none with radio_sleep = true (a babbling radio is never idle)")
        _check(self.transport in TRANSPORTS, "transport", self.transport, "one of " + ", ".join(TRANSPORTS))
        _check(isinstance(self.fanout, int) and 0 <= self.fanout < self.devices, "fanout", self.fanout,
               f"an integer in [0, devices - 1 = {self.devices - 1}] (0: every neighbour)")
        _check(self.fanout == 0 or self.transport != "broadcast", "fanout", self.fanout,
               "0 with transport = \"broadcast\" (a broadcast reaches every neighbour; use unicast or tcp)")
        _check(self.rate_control in RATE_CONTROLS, "rate_control", self.rate_control,
               "one of " + ", ".join(RATE_CONTROLS))
        _check(self.mobility in MOBILITY_MODELS, "mobility", self.mobility,
               "one of " + ", ".join(MOBILITY_MODELS))
        _check(0.0 < self.speed_mps <= 100.0, "speed_mps", self.speed_mps, "a number in (0, 100]")
        _check(0.0 <= self.pause_s <= 3600.0, "pause_s", self.pause_s, "a number in [0, 3600]")
        _check(self.fading in FADING_MODELS, "fading", self.fading, "one of " + ", ".join(FADING_MODELS))
        _check(0.5 <= self.nakagami_m <= 20.0, "nakagami_m", self.nakagami_m, "a number in [0.5, 20]")
        _check(isinstance(self.idle_probes, int) and 1 <= self.idle_probes <= 100, "idle_probes",
               self.idle_probes, "an integer in [1, 100]")
        _check(self.topology in TOPOLOGIES, "topology", self.topology, "one of " + ", ".join(TOPOLOGIES))
        if self.topology == "access_point":  # what the access-point scenario supports so far
            _check(self.transport in ("broadcast", "unicast"), "transport", self.transport,
                   "broadcast or unicast with topology = \"access_point\" (the downlink; uplinks are always unicast)")
            _check(self.fanout == 0, "fanout", self.fanout, "0 with topology = \"access_point\"")
            _check(self.mobility == "static", "mobility", self.mobility,
                   "\"static\" with topology = \"access_point\"")
            _check(self.fading == "none", "fading", self.fading, "\"none\" with topology = \"access_point\"")
        widest = max(1, (self.devices - 1) // 2)
        if self.topology == "circulant":
            _check(isinstance(self.topology_degree, int) and 1 <= self.topology_degree <= widest,
                   "topology_degree", self.topology_degree,
                   f"an integer in [1, (devices - 1) // 2 = {widest}] for a circulant")
        else:  # read by the circulant only, yet part of the run id: keep it a valid degree
            _check(isinstance(self.topology_degree, int) and self.topology_degree >= 1, "topology_degree",
                   self.topology_degree, f"an integer >= 1 (it is read only with topology = \"circulant\"; "
                                         f"leave it out for {self.topology!r})")

        _check(0.1 <= self.supply_voltage_v <= 48.0, "supply_voltage_v", self.supply_voltage_v,
               "a number in [0.1, 48] (volts)")
        _check(isinstance(self.radio_sleep, bool), "radio_sleep", self.radio_sleep, "true or false")
        _check(not self.radio_sleep or (self.topology == "adhoc" and self.transport != "tcp"), "radio_sleep",
               self.radio_sleep, "false unless topology = \"adhoc\" with a UDP transport (broadcast or unicast): "
                                 "stations of an access point and TCP flows need a power-save protocol")
        for name in ("tx_current_a", "rx_current_a", "idle_current_a", "sleep_current_a"):
            # ns-3 reports a state change by the energy it added: a state drawing nothing would hide its time
            _check(0.0 < getattr(self, name) <= 10.0, name, getattr(self, name), "a number in (0, 10] (amperes)")

    @property
    def access_point(self) -> bool:
        return self.topology == "access_point"

    @property
    def nodes(self) -> int:
        """Radios in the simulation: the devices, plus the access point (node N) in that topology."""
        return self.devices + 1 if self.access_point else self.devices

    @property
    def pair_density(self) -> float:
        """The fraction of ordered pairs in range the placement aims at: density, or from mean_neighbours."""
        return self.mean_neighbours / (self.devices - 1) if self.mean_neighbours > 0 else self.density

    @property
    def max_loss_db(self) -> float:
        """The pruned channel's cut-off as a path loss (dB): the loss at which the mean received power reaches
        NOISE_FLOOR_DBM - cutoff_margin_db; 0: no cut-off."""
        if self.channel != "spectrum_pruned":
            return 0.0
        return self.tx_power_dbm - (NOISE_FLOOR_DBM - self.cutoff_margin_db)

    @property
    def cutoff_m(self) -> float:
        """Distance at which the received power reaches the cut-off (LogDistance)."""
        loss = self.tx_power_dbm - (NOISE_FLOOR_DBM - self.cutoff_margin_db)
        return 10 ** ((loss - REFERENCE_LOSS_DB) / (10 * PATH_LOSS_EXPONENT))

    @property
    def range_m(self) -> float:
        return 10 ** ((self.tx_power_dbm - PREAMBLE_THRESHOLD_DBM - REFERENCE_LOSS_DB) / (10 * PATH_LOSS_EXPONENT))

    @property
    def slot_period_s(self) -> float:
        """Simulated spacing between consecutive exchanges: the deadline plus a drain for late frames."""
        return self.deadline_s + self.drain_s


def exchange_senders(config: ScenarioConfig, exchange: int, payload_bytes: int) -> list[int]:
    """Bytes each node sends in exchange ``exchange`` of a round when the algorithm sends ``payload_bytes``.

    Ad hoc: every device. Access point: even exchanges are uplinks (every device, the access point silent),
    odd ones downlinks (the access point alone)."""
    if not config.access_point:
        return [payload_bytes] * config.devices
    if exchange % 2 == 0:
        return [payload_bytes] * config.devices + [0]
    return [0] * config.devices + [payload_bytes]


# Fields added after traces were cached: left out of a trace's identity while at these defaults, so every trace
# made before them keeps its key (``scenario_identity``).
IDENTITY_NEUTRAL_DEFAULTS = {"mean_neighbours": 0.0, "channel": "yans", "cutoff_margin_db": 7.0,
                             "trace_chunk_rounds": 0, "jammer_duty_cycle": 0.0, "jammer_x": 0.5, "jammer_y": 0.5,
                             "babblers": (), "babble_duty_cycle": 0.5}


def scenario_identity(config: ScenarioConfig) -> dict:
    """The scenario's fields as they enter a trace key (``IDENTITY_NEUTRAL_DEFAULTS`` left out at their default)."""
    return {name: value for name, value in asdict(config).items()
            if not (name in IDENTITY_NEUTRAL_DEFAULTS and value == IDENTITY_NEUTRAL_DEFAULTS[name])}


def _check(ok: bool, field: str, value: object, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{field}: {value!r} is not allowed; expected {allowed}")


@dataclass(frozen=True)
class Placement:
    positions_m: np.ndarray  # (N, 2)
    side_m: float
    geometric_density: float  # fraction of ordered pairs closer than the range


def place_devices(config: ScenarioConfig, seed: int) -> Placement:
    """Uniform random positions in a square sized so the in-range pair fraction matches the target
    (access point: the fraction of devices in range of the access point, which is appended at the centre)."""
    rng = np.random.default_rng([seed, 0x5CE7])
    unit = rng.random((config.devices, 2))
    if config.access_point:
        unit = np.vstack([unit, [[0.5, 0.5]]])
        distances = np.sort(np.linalg.norm(unit[:-1] - unit[-1], axis=1))
    else:
        upper = np.triu_indices(config.devices, k=1)
        distances = np.sort(np.linalg.norm(unit[:, None] - unit[None], axis=-1)[upper])
    in_range = int(round(config.pair_density * len(distances)))
    if in_range >= len(distances):
        scale = distances[-1] * 1.001  # every pair strictly inside the range
    elif in_range == 0:
        scale = distances[0] * 0.999
    else:
        scale = 0.5 * (distances[in_range - 1] + distances[in_range])
    side = config.range_m / scale
    positions = unit * side
    geometric = float(np.mean(distances * side < config.range_m))  # access point: the geometric coverage
    return Placement(positions, float(side), geometric)
