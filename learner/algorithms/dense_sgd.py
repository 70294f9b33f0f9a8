"""Dense SGD through a parameter server: the uncompressed reference of the sparsification family
(eSGD's "std SGD"; Tao & Li, HotEdge 2018, compare against it on their parameter server).

Synchronous parameter-server SGD over the access-point scenario (``learner/server.py``)::

    each device j:  g_j = grad f_j(x_j) at its copy x_j, uploaded dense (d x 4 bytes)
    server:         w <- w - (lr / N) * sum_{j : upload arrived} g_j
    each device j:  x_j <- w if the download (the dense model, d x 4 bytes) arrived, else x_j

With every upload and download delivered this is mini-batch SGD on the
global model with N x batch samples per step. Reconstruction: dividing by N
rather than by the uploads received (so a lost upload is a smaller step, not a
re-weighted one) is our choice, shared by every server method here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, dense
from learner.server import SERVER_ARCHITECTURE, server_messages, sgd_round


@dataclass(frozen=True)
class DenseSGD:
    lr: float = 0.1
    name: str = "dense_sgd"
    architecture = SERVER_ARCHITECTURE  # class attribute: runs on network.topology = "access_point"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return server_messages(dense("gradient", dim), dim)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> torch.Tensor:
        return x[0].clone()  # the global model: every device starts from the same initial model

    def step(self, x: torch.Tensor, state: torch.Tensor, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, torch.Tensor]:
        grad = grad_fn(x)
        return sgd_round(x, state, grad, links, self.lr)
