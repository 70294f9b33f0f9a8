"""The network as a schedule sees it: send a message, run on to the next arrival, radio state.

Two implementations: ns-3's (``ns3_scenarios.network.Ns3Messages``, in the worker process) and the control
link models' (``bridge.messages.DelayMessages``), so every schedule runs over either unchanged."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

RESOLUTION_S = 1e-9  # ns-3 keeps time in nanoseconds: a moment within this of the network's clock has come


class Messages(Protocol):
    """The message core as a schedule sees it: who addresses whom, send, run on, radio state."""

    nodes: int

    def now_s(self) -> float: ...

    def send(self, sender: int, at_s: float, nbytes: int, step: int, exchange: int,
             targets: Sequence[int] | None = None) -> int:
        """Schedule ``sender``'s message of (step, exchange) from ``at_s`` on; returns its number (0, 1, ...).
        ``targets``: None sends to every neighbour (the scenario's transport: a broadcast, or a unicast copy
        each); a list of devices sends a unicast, acknowledged copy to each of them only (a pairwise
        algorithm's chosen peer)."""

    def advance(self, until_s: float) -> list[tuple[int, int, float]]:
        """Run until ``until_s`` or the first arrival before it, whichever comes first (``now_s`` says where it
        stopped); the (message number, receiver, arrival time) of the messages completed since the last call."""

    def sleep_between(self, device: int, from_s: float, until_s: float) -> None: ...

    def radio_seconds(self) -> np.ndarray:
        """(nodes, 4) seconds each radio has spent so far in tx, rx, idle and sleep (``messages.ledger``); per
        node they sum to the time since the network began."""

    def retries(self) -> np.ndarray:
        """(nodes,) MAC retransmissions each device has made so far (unicast data frames sent again after a
        missing ACK; ns-3's count, 0 for the controls, which model no retries)."""
