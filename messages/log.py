"""The message log a free-running (asynchronous) run learns from: when each device ends its steps and where
its messages arrive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MessageLog:
    """When each device ends its steps and where its messages arrive, in seconds since the schedule began.

    ``step_end_s`` (K, N): device i ends its k-th step (and sends) at step_end_s[k, i], a time (a schedule's
    ``step_s`` is a duration: each device's compute per step); NaN: no such step.
    ``arrival_s`` (K, N, N) [k, sender, receiver]: when sender's k-th message completed at receiver (NaN: never).
    """

    step_end_s: np.ndarray
    arrival_s: np.ndarray

    def within(self, horizon_s: float) -> "MessageLog":
        """The steps that end by ``horizon_s`` and the messages they sent."""
        step_end_s = np.where(self.step_end_s <= horizon_s, self.step_end_s, np.nan)
        arrival_s = np.where(~np.isnan(step_end_s)[:, :, None], self.arrival_s, np.nan)
        return MessageLog(step_end_s, arrival_s)
