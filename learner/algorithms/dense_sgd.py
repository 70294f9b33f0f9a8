"""Dense SGD: the uncompressed reference of the sparsification family (eSGD's "std SGD").

eSGD (Tao & Li, HotEdge 2018) compares against standard SGD through a
parameter server. Decentralized form used here: every device broadcasts its
full gradient and applies the receiver mean of the gradients it holds::

    x_j <- x_j - lr * mean_{i in {j} ∪ {i : mask[i, j]}} g_i(x_i)

There is no model averaging, so models that start equal drift apart as soon as
devices hold different sets of gradients (``consensus_distance`` in
metrics.csv measures it). Payload: the dense float32 gradient, d x 4 bytes
(the same size as D-PSGD's model, so both replay one ns-3 trace).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import FLOAT32_BYTES, GradFn, Links, StatelessDenseModel, check_range
from learner.mixing import receiver_mean


@dataclass(frozen=True)
class DenseSGD(StatelessDenseModel):
    lr: float = 0.1
    name: str = "dense_sgd"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        grad = grad_fn(x)
        mask = links.exchange(x.shape[1] * FLOAT32_BYTES)
        return x - self.lr * receiver_mean(mask, grad), None
