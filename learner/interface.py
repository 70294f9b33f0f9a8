"""What the algorithms and the server helpers (``learner.server``) share, outside the algorithms package so
that importing either never runs the other's package first: the ``Links`` an algorithm exchanges over and
the size of a float32 on the air."""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

FLOAT32_BYTES = 4


class Links(Protocol):
    """Who received whom in one round, one exchange at a time."""

    def exchange(self, payload_bytes: int | Sequence[int]) -> torch.Tensor:
        """Bool (N, N) mask of the next exchange: mask[i, j] = j received i's complete message.

        ``payload_bytes``: what every device sends, or one size per sender (sizes that
        change between rounds or senders need ``network.mode = "online"``)."""
