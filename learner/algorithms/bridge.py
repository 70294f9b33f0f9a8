"""BRIDGE-T (Yang & Bajwa, "BRIDGE: Byzantine-resilient decentralized gradient descent", arXiv 2019; Fang, Yang &
Bajwa, IEEE TSIPN 2022): per coordinate k, device j drops the b = ``trim`` largest received values among those
above its own [x_j]_k and the b smallest among those below it, then::

    [x_j]_k <- mean({[x_j]_k} U the remaining [x_i]_k) - lr * [g_j(x_j)]_k

(``learner.robust.bridge_screen``). The screening is relative to the device's own value: a side holding fewer
than b values loses all of them, so **any number of messages works** (with none, the device keeps its model).
Payload: the dense float32 model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, StatelessDenseModel, carried, check_integer, check_range
from learner.robust import bridge_screen, candidates


@dataclass(frozen=True)
class Bridge(StatelessDenseModel):
    lr: float = 0.1
    trim: int = 1  # b: the Byzantine neighbours screened per side and coordinate
    name: str = "bridge"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("trim", self.trim, 0, 500)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        grad = grad_fn(x)
        mask = links.exchange()
        values, valid = candidates(x, carried(links, x, mask), mask)
        return bridge_screen(values, valid, self.trim) - self.lr * grad, None
