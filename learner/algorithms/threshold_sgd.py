"""Threshold SGD (Strom, Interspeech 2015; eSGD's "threshold SGD" baseline), through a parameter server.

Each device adds its gradient to a local residual and uploads only the
coordinates whose accumulated value exceeds a fixed threshold tau; the server
applies what arrived to the global model and sends it back
(``learner/server.py``)::

    a_j = r_j + grad f_j(x_j),   S_j = {c : |a_jc| > tau}
    s_j = a_j on S_j (sent),  r_j <- a_j off S_j (kept, so s_j + r_j = a_j)
    w <- w - (lr / N) * sum_{j : upload arrived} s_j;   x_j <- w if the download arrived

Upload: ``learner.compress.encoded_bytes(|S_j|, d)`` per device (its header
alone when nothing is selected: an empty message still goes up), which changes
per device and round, so this algorithm needs ``network.mode = "online"``;
``exchange_payloads`` declares the upper bound (dense) and the download.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import FLOAT32_BYTES, GradFn, Links, check_range
from learner.compress import encoded_sizes, split, threshold_mask
from learner.server import SERVER_ARCHITECTURE, model_bytes, sgd_round


@dataclass(frozen=True)
class ThresholdState:
    global_model: torch.Tensor  # (d,)
    residual: torch.Tensor  # (N, d) r


@dataclass(frozen=True)
class ThresholdSGD:
    lr: float = 0.1
    threshold: float = 0.01
    name: str = "threshold_sgd"
    variable_payload = True  # class attribute, not a field: per-device upload sizes change every round
    architecture = SERVER_ARCHITECTURE

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("threshold", self.threshold, 0.0, 1e6, low_open=False)

    def exchange_payloads(self, dim: int) -> tuple[int, ...]:
        return (dim * FLOAT32_BYTES, model_bytes(dim))

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> ThresholdState:
        return ThresholdState(x[0].clone(), torch.zeros_like(x))

    def step(self, x: torch.Tensor, state: ThresholdState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, ThresholdState]:
        accumulated = state.residual + grad_fn(x)
        selected = threshold_mask(accumulated, self.threshold)
        sent, residual = split(accumulated, selected)
        x, global_model = sgd_round(x, state.global_model, sent, encoded_sizes(selected), links, self.lr)
        return x, ThresholdState(global_model, residual)
