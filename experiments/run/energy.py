"""Energy per device and round: the ledger's joules (``messages.ledger``) over what the clock counts, and batteries.

Under rounds every device's clock counts the round: the slowest live device's compute (and the server's, for
FedAvg), during which every radio listens (or, with ``radio_sleep``, sleeps), then each used exchange for as
long as ``RoundLinks.windows_s`` counts it, whose radio seconds the trace cuts at that length
(``LinkTrace.radio_window_s``). Under a barrier schedule a device's step is charged its radio seconds between
its barriers (the message core's timeline). A device's compute seconds are its own: local steps x its step time
(experiments.run.compute). Joules = radio seconds x currents x voltage + compute seconds x
``network.compute_power_w``.

With ``network.battery_j`` > 0 a device whose cumulative energy reaches the
capacity in round r is dead from round r + 1 on: it neither sends nor
receives (its links are dropped in both directions), it stops training (its
model stays as it was, and is still evaluated) and spends nothing. The trace
was made with every device sending, so a dead device's frames still occupy
the channel in it: batteries change who learns from whom, not the simulated
channel. On the access-point scenario the server (node N) is mains-powered:
it is never charged here (its radio's seconds are in ``links.csv``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bridge.trace import LinkTrace, RoundLinks
from messages.ledger import RADIO_STATES, Power, listening


class PoweredLinks:
    """A round's ``Links`` without the dead devices: their rows and columns of every mask are False.
    ``delivered`` counts the pairs of the masks handed to the algorithm (metrics.csv's delivered_links)."""

    def __init__(self, links: RoundLinks, alive: np.ndarray, nodes: int):
        self._links = links
        powered = np.concatenate([alive, np.ones(nodes - len(alive), dtype=bool)])  # a server never dies
        self._pairs = torch.from_numpy(powered[:, None] & powered[None, :])
        self.delivered = 0

    def exchange(self, payload_bytes: int | Sequence[int]) -> torch.Tensor:
        mask = self._links.exchange(payload_bytes) & self._pairs
        self.delivered += int(mask.sum())
        return mask

    @property
    def used(self) -> int:
        return self._links.used

    @property
    def duration_s(self) -> float:
        return self._links.duration_s

    @property
    def windows_s(self) -> list[float]:
        return self._links.windows_s


class EnergyMeter:
    """Charges each round (or barrier step) to the devices by the ledger and keeps their batteries."""

    def __init__(self, trace: LinkTrace, devices: int, power: Power, step_s: np.ndarray | float,
                 battery_j: float, radio_sleep: bool = False):
        """``step_s``: each device's simulated seconds per local step (experiments.run.compute), or one for all."""
        self._trace, self._power, self._sleep = trace, power, radio_sleep
        self._step_s = np.broadcast_to(np.asarray(step_s, dtype=float), (devices,)).copy()
        self._battery_j = battery_j
        n = devices
        self.alive = np.ones(n, dtype=bool)
        self.spent_j = np.zeros(n)  # cumulative, per device
        self.radio_s = np.zeros((n, len(RADIO_STATES)))  # cumulative seconds per device and radio state
        self.compute_s = np.zeros(n)  # cumulative
        self.clock_s = np.zeros(n)  # each device's clock: the time the ledger has charged it for
        self.died_round: list[int | None] = [None] * n

    def snapshot(self) -> dict:
        """The ledger and batteries as JSON-able data, for a checkpoint (floats round-trip exactly through JSON)."""
        return {"alive": self.alive.tolist(), "spent_j": self.spent_j.tolist(), "died_round": list(self.died_round),
                "radio_s": self.radio_s.tolist(), "compute_s": self.compute_s.tolist(), "clock_s": self.clock_s.tolist()}

    def restore(self, snapshot: dict) -> None:
        self.alive = np.array(snapshot["alive"], dtype=bool)
        self.spent_j = np.array(snapshot["spent_j"], dtype=np.float64)
        self.died_round = list(snapshot["died_round"])
        self.radio_s = np.array(snapshot["radio_s"], dtype=np.float64).reshape(self.radio_s.shape)
        self.compute_s = np.array(snapshot["compute_s"], dtype=np.float64)
        self.clock_s = np.array(snapshot["clock_s"], dtype=np.float64)

    def links(self, links: RoundLinks) -> PoweredLinks:
        return PoweredLinks(links, self.alive, self._trace.devices)

    def slowest_step_s(self, step_s: np.ndarray) -> float:
        """How long a synchronous round's local step lasts: the slowest live device's step (the others wait;
        with every battery empty, the slowest device's, so the clock runs on as before batteries emptied)."""
        return float((step_s[self.alive] if self.alive.any() else step_s).max())

    def hold_dead(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Parameters after the round: a dead device keeps the model it had."""
        if self.alive.all():
            return after
        return torch.where(torch.from_numpy(self.alive)[:, None], after, before)

    def charge_round(self, round_index: int, listen_s: float, windows_s: Sequence[float], local_steps: int) -> dict:
        """Rounds: ``listen_s`` of compute (every radio listening or asleep), then the used exchanges, each
        for its window on the clock; each device computed ``local_steps`` of its own step time."""
        n = len(self.alive)
        radio = listening(listen_s, n, self._sleep)
        for exchange, window_s in enumerate(windows_s):
            radio += self._trace.radio_window_s(round_index, exchange, window_s)[:n]
        self.clock_s = np.where(self.alive, self.clock_s + listen_s + sum(windows_s), self.clock_s)
        return self._charge(round_index, radio, self._step_s * local_steps)

    def charge_step(self, round_index: int, local_steps: int) -> dict:
        """A barrier schedule's step ``round_index``: each device's radio seconds between its barriers (every
        exchange of the step: its clock counts them all) and its compute."""
        n = len(self.alive)
        self.clock_s = np.where(self.alive, self._trace.finished_s[round_index, -1, :n], self.clock_s)
        return self._charge(round_index, self._trace.radio_s[round_index, :, :n].sum(axis=0),
                            self._step_s * local_steps)

    def _charge(self, round_index: int, radio_s: np.ndarray, compute_s: np.ndarray) -> dict:
        """Charge round ``round_index`` (0-based) to the devices alive in it; its columns of metrics.csv."""
        radio_s = np.where(self.alive[:, None], radio_s, 0.0)
        compute_s = np.where(self.alive, compute_s, 0.0)
        radio, compute = self._power.radio_j(radio_s), self._power.compute_j(compute_s)
        self.radio_s += radio_s
        self.compute_s += compute_s
        self.spent_j += radio + compute
        if self._battery_j > 0:
            emptied = self.alive & (self.spent_j >= self._battery_j)
            for device in np.flatnonzero(emptied):
                self.died_round[device] = round_index + 1
            self.alive &= ~emptied
        return {**energy_columns(radio, compute, self.spent_j, int(self.alive.sum())),
                **state_columns(self.radio_s, self.compute_s)}

    def device_columns(self) -> list[dict]:
        """Per device, its cumulative ledger (device_metrics.csv)."""
        return device_ledger(self.radio_s, self.compute_s, self.spent_j, self.clock_s)


def energy_columns(radio: np.ndarray, compute: np.ndarray, spent: np.ndarray, alive: int) -> dict:
    """metrics.csv's energy columns for one round (joules; per-device mean and max of the round's total)."""
    total = radio + compute
    return {
        "energy_j": float(total.sum()),
        "radio_energy_j": float(radio.sum()),
        "compute_energy_j": float(compute.sum()),
        "energy_mean_j": float(total.mean()),
        "energy_max_j": float(total.max()),
        "cumulative_energy_j": float(spent.sum()),
        "alive_devices": alive,
    }


def state_columns(radio_s: np.ndarray, compute_s: np.ndarray) -> dict:
    """metrics.csv's ledger columns: cumulative seconds per radio state and of compute, summed over devices."""
    return {**{f"radio_{state}_s": float(radio_s[:, k].sum()) for k, state in enumerate(RADIO_STATES)},
            "compute_s": float(compute_s.sum())}


def device_ledger(radio_s: np.ndarray, compute_s: np.ndarray, spent_j: np.ndarray, clock_s: np.ndarray) -> list[dict]:
    """Per device, the time its clock has counted so far (``clock_s``, which its radio seconds split exactly),
    its cumulative radio seconds per state, compute seconds and joules."""
    return [{"clock_s": float(clock_s[i]),
             **{f"radio_{state}_s": float(radio_s[i, k]) for k, state in enumerate(RADIO_STATES)},
             "compute_s": float(compute_s[i]), "energy_j": float(spent_j[i])} for i in range(len(compute_s))]


def round_zero_columns(devices: int) -> dict:
    zeros = np.zeros(devices)
    return {**energy_columns(zeros, zeros, zeros, devices),
            **state_columns(np.zeros((devices, len(RADIO_STATES))), zeros)}
