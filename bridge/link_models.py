"""Every link model as one record: what it is, whether its links follow the devices' positions, how it times a
message (captions say it, so seconds are read for what they are), its line in plots, and its config rules.

A link model decides who received whom and when. Kinds:

- ``ns3``: the simulation itself (an ns-3 worker process);
- ``control``: a named baseline computed here (``bridge.controls``): the ideal unit-disc graph, a random graph
  of the same density, a fixed graph; each has a message core (``bridge.messages.DelayMessages``), so every
  schedule runs over it;
- ``ladder``: a rung of the ablation ladder, derived from the ns-3 trace of the same request
  (``bridge.ladder``);
- ``test``: ``synthetic``, uniform delays for fast tests, a named option and never a fallback.

Adding a link model is its implementation and one record here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ns3_scenarios.scenario import GRAPH_TOPOLOGIES

Rule = tuple[str, Any, bool, str]  # (config field, its value, whether it holds, what is expected)
KINDS = ("ns3", "control", "ladder", "test")


@dataclass(frozen=True)
class LinkModel:
    name: str
    kind: str
    placed: bool  # its links follow the devices' positions (positions.csv, topology.png)
    clock: str  # how it times a message
    style: Any  # matplotlib line style in plots
    graph: bool = False  # its topology is a fixed graph (network.topology one of GRAPH_TOPOLOGIES)

    @property
    def from_ns3(self) -> bool:
        """Its trace comes from an ns-3 simulation (the channel options and chunking apply)."""
        return self.kind in ("ns3", "ladder")

    @property
    def message_core(self) -> bool:
        """It answers a message-core schedule (``messages.network.Messages``): ns-3's or a control's."""
        return self.kind in ("ns3", "control")

    def rules(self, config: Any) -> list[Rule]:
        """The config rules this link model owns (``config`` is a run config)."""
        network, scenario, name = config.network, config.scenario, repr(self.name)
        graph_expected = (f"one of {', '.join(GRAPH_TOPOLOGIES)} with link_model = \"{self.name}\"" if self.graph
                          else f"\"adhoc\" with link_model = {name} (fixed graphs need link_model = \"fixed_graph\")")
        rules = [
            ("network.topology", scenario.topology, (scenario.topology in GRAPH_TOPOLOGIES) == self.graph,
             graph_expected),
            ("network.mode", network.mode, network.mode == "offline" or self.kind == "ns3",
             f"\"offline\" with link_model = {name} (online mode simulates in ns-3)"),
            ("network.channel", scenario.channel, scenario.channel == "yans" or self.from_ns3,
             f"\"yans\" (left out) with link_model = {name}: only ns-3 simulates a channel"),
            ("network.trace_chunk_rounds", scenario.trace_chunk_rounds,
             not scenario.trace_chunk_rounds or (self.from_ns3 and network.mode == "offline"
                                                 and network.schedule == "rounds"),
             "0 unless an offline ns-3 trace of synchronous rounds (link_model = \"ns3\" or a ladder rung, "
             "mode = \"offline\", schedule = \"rounds\")")]
        if self.kind == "ladder":
            rules.append(("network.topology", scenario.topology, scenario.topology == "adhoc",
                          f"\"adhoc\" with link_model = {name} (the ladder's rungs derive from an ad-hoc ns-3 trace)"))
        return rules


_CONTROL_CLOCK = ("airtime model: each message its own airtime from its send, sent at every schedule's offset "
                  "U(0, start_jitter_s) after its compute")
_RUNG_CLOCK = "the ns-3 trace's completion times (a ladder rung)"

LINK_MODELS: dict[str, LinkModel] = {record.name: record for record in (
    LinkModel("ns3", "ns3", True, "ns-3 simulates each message to its last byte (contention, collisions, retries)",
              "-"),
    LinkModel("ideal", "control", True, _CONTROL_CLOCK, "--"),
    LinkModel("random_graph", "control", False, _CONTROL_CLOCK, ":"),
    LinkModel("fixed_graph", "control", False, _CONTROL_CLOCK, "-.", graph=True),
    LinkModel("ns3_ideal", "ladder", False, _RUNG_CLOCK, "-."),
    LinkModel("ns3_random_graph", "ladder", False, _RUNG_CLOCK, "-."),
    LinkModel("ns3_geometry", "ladder", True, _RUNG_CLOCK, "-."),
    LinkModel("ns3_independent_loss", "ladder", True, _RUNG_CLOCK, "-."),
    LinkModel("synthetic", "test", True, "uniform in (0, deadline): a test model", (0, (1, 3))),
)}


def names_of_kind(kind: str) -> tuple[str, ...]:
    return tuple(name for name, record in LINK_MODELS.items() if record.kind == kind)
