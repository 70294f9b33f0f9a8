"""Threshold SGD (Strom, Interspeech 2015; eSGD's "threshold SGD" baseline).

Each device adds its gradient to a local residual and sends only the
coordinates whose accumulated value exceeds a fixed threshold tau::

    a_i = r_i + g_i(x_i),   S_i = {c : |a_ic| > tau}
    s_i = a_i on S_i (sent),  r_i <- a_i off S_i (kept, so s_i + r_i = a_i)
    x_j <- x_j - lr * mean_{i in {j} ∪ {i : mask[i, j]}} s_i

(decentralized receiver-mean form of the parameter-server update; no model
averaging, so models drift apart: see ``consensus_distance``).

Payload: ``learner.compress.encoded_bytes(|S_i|, d)`` per sender, which
changes per sender and round, so this algorithm needs
``network.mode = "online"``; an offline trace refuses it with a clear error.
``exchange_payloads`` declares the upper bound, the dense size 4 d.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import FLOAT32_BYTES, GradFn, Links, check_range
from learner.compress import encoded_sizes, split, threshold_mask
from learner.mixing import receiver_mean


@dataclass(frozen=True)
class ThresholdSGD:
    lr: float = 0.1
    threshold: float = 0.01
    name: str = "threshold_sgd"
    variable_payload = True  # class attribute, not a field: per-sender sizes change every round

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("threshold", self.threshold, 0.0, 1e6, low_open=False)

    def exchange_payloads(self, dim: int) -> tuple[int, ...]:
        return (dim * FLOAT32_BYTES,)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> torch.Tensor:
        return torch.zeros_like(x)  # the residual r

    def step(self, x: torch.Tensor, state: torch.Tensor, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, torch.Tensor]:
        accumulated = state + grad_fn(x)
        selected = threshold_mask(accumulated, self.threshold)
        sent, residual = split(accumulated, selected)
        mask = links.exchange(encoded_sizes(selected))
        return x - self.lr * receiver_mean(mask, sent), residual
