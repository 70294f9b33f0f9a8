"""Decentralized coordinate-wise trimmed mean (Yin, Chen, Ramchandran & Bartlett, "Byzantine-robust distributed
learning: towards optimal statistical rates", ICML 2018), read for a decentralized network as in Yang & Bajwa
and He, Karimireddy & Jaggi's baselines::

    x_j <- TrMean_b({x_j} U {x_i : j received i this round}) - lr * g_j(x_j)

per coordinate, dropping the b = ``trim`` largest and b smallest of the device's own model and the models it
received (``learner.robust.trimmed_mean``). Reconstruction: the paper's server rule applied by every device to
its own neighbourhood, D-PSGD's order (mix, then the gradient of the model before mixing). **Fewer than 2b + 1
values** (the count varies per device and round over 802.11a): floor((m - 1) / 2) per side, so a device that
heard nobody keeps its model. Payload: the dense float32 model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, StatelessDenseModel, carried, check_integer, check_range
from learner.robust import candidates, trimmed_mean


@dataclass(frozen=True)
class TrimmedMean(StatelessDenseModel):
    lr: float = 0.1
    trim: int = 1  # b: values dropped per side and coordinate
    name: str = "trimmed_mean"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("trim", self.trim, 0, 500)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        grad = grad_fn(x)
        mask = links.exchange()
        values, valid = candidates(x, carried(links, x, mask), mask)
        return trimmed_mean(values, valid, self.trim) - self.lr * grad, None
