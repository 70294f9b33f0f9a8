"""The message log a free-running (asynchronous) run learns from: when each device ends its steps and where
its messages arrive, and, for pairwise exchanges, where each request went and when its reply came back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MessageLog:
    """When each device ends its steps and where its messages arrive, in seconds since the schedule began.

    ``step_end_s`` (K, N): device i ends its k-th step (and sends) at step_end_s[k, i], a time (a schedule's
    ``step_s`` is a duration: each device's compute per step); NaN: no such step.
    ``arrival_s`` (K, N, N) [k, sender, receiver]: when sender's k-th message completed at receiver (NaN: never).
    A message to one drawn peer (``Plan.peers = "one"`` or ``"pairwise"``) adds ``partner`` (K, N): the one
    device i's k-th message was sent to, -1: none. Pairwise exchanges also add ``answered`` (K, N): the partner
    took the request (it replied, the moment the request arrived); ``reply_s`` (K, N): when that reply
    completed back at i (NaN: never).
    """

    step_end_s: np.ndarray
    arrival_s: np.ndarray
    partner: np.ndarray | None = None
    answered: np.ndarray | None = None
    reply_s: np.ndarray | None = None

    @property
    def pairwise(self) -> bool:
        return self.answered is not None

    @property
    def one_peer(self) -> bool:
        """Each message went to one drawn peer, nothing came back (gossip learning as published)."""
        return self.partner is not None and self.answered is None

    def within(self, horizon_s: float) -> "MessageLog":
        """The steps that end by ``horizon_s``, the messages they sent and the replies those got."""
        step_end_s = np.where(self.step_end_s <= horizon_s, self.step_end_s, np.nan)
        kept = ~np.isnan(step_end_s)
        arrival_s = np.where(kept[:, :, None], self.arrival_s, np.nan)
        if self.partner is None:
            return MessageLog(step_end_s, arrival_s)
        if not self.pairwise:
            return MessageLog(step_end_s, arrival_s, np.where(kept, self.partner, -1))
        return MessageLog(step_end_s, arrival_s, np.where(kept, self.partner, -1), self.answered & kept,
                          np.where(kept, self.reply_s, np.nan))
