"""Energy per device and round: the radio's joules from the link trace plus compute, and batteries.

A round's energy on device i is

    radio_i   = joules its radio spent over the exchanges the algorithm used
                (the trace's ``radio_energy_j``: ns-3's energy model, or the
                controls' airtime estimate), each over its whole window
    compute_i = network.compute_power_w x local steps x device i's step time (experiments.run.compute)

With ``network.battery_j`` > 0 a device whose cumulative energy reaches the
capacity in round r is dead from round r + 1 on: it neither sends nor
receives (its links are dropped in both directions), it stops training (its
model stays as it was, and is still evaluated) and spends nothing. The trace
was made with every device sending, so a dead device's frames still occupy
the channel in it: batteries change who learns from whom, not the simulated
channel. On the access-point scenario the server (node N) is mains-powered:
it is never charged here (its radio's joules are in ``links.csv``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bridge.trace import LinkTrace, RoundLinks


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


class EnergyMeter:
    """Charges each round's energy to the devices and keeps their batteries."""

    def __init__(self, trace: LinkTrace, devices: int, compute_power_w: float, step_s: np.ndarray | float,
                 battery_j: float):
        """``step_s``: each device's simulated seconds per local step (experiments.run.compute), or one for all."""
        self._trace = trace
        self._compute_j_per_step = compute_power_w * np.broadcast_to(np.asarray(step_s, dtype=float), (devices,))
        self._battery_j = battery_j
        n = devices
        self.alive = np.ones(n, dtype=bool)
        self.spent_j = np.zeros(n)  # cumulative, per device
        self.died_round: list[int | None] = [None] * n

    def snapshot(self) -> dict:
        """The batteries as JSON-able data, for a checkpoint (floats round-trip exactly through JSON)."""
        return {"alive": self.alive.tolist(), "spent_j": self.spent_j.tolist(), "died_round": list(self.died_round)}

    def restore(self, snapshot: dict) -> None:
        self.alive = np.array(snapshot["alive"], dtype=bool)
        self.spent_j = np.array(snapshot["spent_j"], dtype=np.float64)
        self.died_round = list(snapshot["died_round"])

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

    def charge(self, round_index: int, exchanges: int, local_steps: int) -> dict:
        """Charge round ``round_index`` (0-based) to the devices alive in it; its columns of metrics.csv."""
        devices = len(self.alive)
        radio = self._trace.radio_energy_j[round_index, :exchanges, :devices].sum(axis=(0, 2))
        compute = self._compute_j_per_step * local_steps
        radio, compute = np.where(self.alive, radio, 0.0), np.where(self.alive, compute, 0.0)
        spent = radio + compute
        self.spent_j += spent
        if self._battery_j > 0:
            emptied = self.alive & (self.spent_j >= self._battery_j)
            for device in np.flatnonzero(emptied):
                self.died_round[device] = round_index + 1
            self.alive &= ~emptied
        return energy_columns(radio, compute, self.spent_j, int(self.alive.sum()))


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


def round_zero_columns(devices: int) -> dict:
    zeros = np.zeros(devices)
    return energy_columns(zeros, zeros, zeros, devices)
