"""The ledger: what each device spends, from the time its clock counts. One rule for every path.

Every device's clock counts an interval (rounds: the round, the same for every device: the slowest live
device's compute, then each exchange as ``RoundLinks.duration_s`` counts it; a barrier schedule or async: from
the schedule's start to the end of the device's last counted step). That interval is split exactly into radio
states, each second in one state::

    tx     sending frames (its own, ACKs for others')
    rx     receiving frames
    idle   listening, including CCA busy and switching (ns-3 draws the idle current in all three)
    sleep  asleep (only with ``radio_sleep``)

and the device's compute seconds run beside them (a computing device's radio is listening or asleep). Its
joules are

    sum over states of seconds x current x supply voltage  +  compute_s x compute_power_w

Nothing outside the clock is charged; nothing inside it is free. Who supplies the radio seconds: ns-3 its PHY
state timeline (cut at the clock's boundaries, ``ns3_scenarios/adhoc_network.h``), the controls their airtime
estimate, the derived ladder rungs ns-3's timeline over their own clock (``between_cuts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RADIO_STATES = ("tx", "rx", "idle", "sleep")
TX, RX, IDLE, SLEEP = range(len(RADIO_STATES))


@dataclass(frozen=True)
class Power:
    """The supply voltage, each radio state's current and the processor's power while it computes."""

    supply_voltage_v: float
    tx_current_a: float
    rx_current_a: float
    idle_current_a: float
    sleep_current_a: float
    compute_power_w: float = 0.0

    @classmethod
    def of(cls, scenario: Any, compute_power_w: float = 0.0) -> "Power":
        """From a scenario's currents and voltage (``ScenarioConfig``) and the network's compute power."""
        return cls(scenario.supply_voltage_v, scenario.tx_current_a, scenario.rx_current_a,
                   scenario.idle_current_a, scenario.sleep_current_a, compute_power_w)

    @property
    def state_w(self) -> np.ndarray:
        """(4,) watts drawn in each radio state."""
        return self.supply_voltage_v * np.array([self.tx_current_a, self.rx_current_a, self.idle_current_a,
                                                 self.sleep_current_a])

    def radio_j(self, radio_s: np.ndarray) -> np.ndarray:
        """Joules of radio state seconds (..., 4) -> (...)."""
        return np.asarray(radio_s, dtype=np.float64) @ self.state_w

    def compute_j(self, compute_s: np.ndarray) -> np.ndarray:
        return self.compute_power_w * np.asarray(compute_s, dtype=np.float64)


def listening(window_s: float, devices: int, asleep: bool) -> np.ndarray:
    """(devices, 4) a radio that neither sends nor receives for ``window_s``: idle, or asleep."""
    states = np.zeros((devices, len(RADIO_STATES)))
    states[:, SLEEP if asleep else IDLE] = window_s
    return states


def between_cuts(cuts_s: np.ndarray, at_cuts: np.ndarray, window_s: float) -> np.ndarray:
    """State seconds over [0, ``window_s``] from a timeline recorded at cuts: ``at_cuts`` (K, N, 4) the seconds
    per state from 0 to each of the ascending ``cuts_s`` (K,), each summing to its cut. Between cuts (and
    from 0 to the first) every state grows linearly, so the result sums to ``window_s``; a window past the last
    cut extends its mix. At a cut it is the recorded split itself (rescaled by at most ns-3's nanosecond
    rounding). A timeline with nothing recorded (all zeros) is idle."""
    knots = np.concatenate([[0.0], np.asarray(cuts_s, dtype=np.float64)])
    values = np.concatenate([np.zeros((1, *at_cuts.shape[1:])), np.asarray(at_cuts, dtype=np.float64)])
    k = int(np.clip(np.searchsorted(knots, window_s, side="left"), 1, len(knots) - 1))
    while k > 1 and knots[k] - knots[k - 1] <= 0.0:  # a repeated cut: interpolate from the earlier distinct one
        k -= 1
    low, high = knots[k - 1], knots[k]
    if high <= low:
        return np.zeros(values.shape[1:])
    share = (window_s - low) / (high - low)
    split = values[k - 1] + share * (values[k] - values[k - 1])
    # ns-3 records on its nanosecond clock: spread that rounding over the states, so each row sums to the window.
    total = split.sum(axis=-1, keepdims=True)
    return np.where(total > 0, split * (window_s / np.where(total > 0, total, 1.0)), listening(window_s, 1, False))


def busy_within(tx_s: np.ndarray, rx_s: np.ndarray, awake_s: np.ndarray, window_s: np.ndarray) -> np.ndarray:
    """(..., 4) an airtime estimate's split of ``window_s``: tx and rx seconds within the ``awake_s`` part,
    the rest of it idle, the remainder of the window asleep. A model without contention can count more
    busy seconds than the radio was awake (overlapping messages); a radio is in one state at a time, so
    tx and rx are then scaled down to the awake time."""
    window_s = np.asarray(window_s, dtype=np.float64)
    awake_s = np.minimum(np.maximum(np.asarray(awake_s, dtype=np.float64), 0.0), window_s)
    busy = tx_s + rx_s
    scale = np.where(busy > awake_s, awake_s / np.where(busy > 0, busy, 1.0), 1.0)
    tx, rx = tx_s * scale, rx_s * scale
    return np.stack([tx, rx, awake_s - tx - rx, window_s - awake_s], axis=-1)
