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
``messages`` declares the upload ``per_sender``, at most the dense size, and the download.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, sparse
from learner.compress import split, threshold_mask
from learner.server import SERVER_ARCHITECTURE, server_messages, sgd_round


@dataclass(frozen=True)
class ThresholdState:
    global_model: torch.Tensor  # (d,)
    residual: torch.Tensor  # (N, d) r


@dataclass(frozen=True)
class ThresholdSGD:
    lr: float = 0.1
    threshold: float = 0.01
    name: str = "threshold_sgd"
    architecture = SERVER_ARCHITECTURE

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("threshold", self.threshold, 0.0, 1e6, low_open=False)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return server_messages(sparse("update", dim, dim), dim, per_sender=True)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> ThresholdState:
        return ThresholdState(x[0].clone(), torch.zeros_like(x))

    def step(self, x: torch.Tensor, state: ThresholdState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, ThresholdState]:
        accumulated = state.residual + grad_fn(x)
        selected = threshold_mask(accumulated, self.threshold)
        sent, residual = split(accumulated, selected)
        x, global_model = sgd_round(x, state.global_model, sent, links, self.lr, kept=selected.sum(1))
        return x, ThresholdState(global_model, residual)
