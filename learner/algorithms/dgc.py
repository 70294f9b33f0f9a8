"""Top-k with error feedback / DGC (Lin et al., "Deep Gradient Compression", ICLR 2018), through a
parameter server.

Momentum correction, local accumulation and momentum factor masking on each
device; each uploads the k = keep_ratio x d largest accumulated coordinates,
the server applies what arrived to the global model and sends it back
(``learner/server.py``)::

    u_j <- m u_j + grad f_j(x_j);   v_j <- v_j + u_j
    S_j = top-k |v_j|;  s_j = v_j on S_j;  v_j, u_j <- 0 on S_j
    w <- w - (lr / N) * sum_{j : upload arrived} s_j;   x_j <- w if the download arrived

(s_j + v_j(after) = v_j(before): nothing is dropped on the device; an upload
lost on the air is lost). Left out from DGC: gradient clipping and the
sparsity warm-up. Payloads: up ``encoded_bytes(k, d)``, down the dense model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, sparse
from learner.compress import keep_count, split, topk_mask
from learner.server import SERVER_ARCHITECTURE, server_messages, sgd_round


@dataclass(frozen=True)
class DGCState:
    global_model: torch.Tensor  # (d,) the server's model
    momentum: torch.Tensor  # (N, d) u
    accumulated: torch.Tensor  # (N, d) v


@dataclass(frozen=True)
class DGC:
    lr: float = 0.1
    keep_ratio: float = 0.1
    momentum: float = 0.9
    name: str = "dgc"
    architecture = SERVER_ARCHITECTURE

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("keep_ratio", self.keep_ratio, 0.0, 1.0)
        check_range("momentum", self.momentum, 0.0, 1.0, low_open=False)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return server_messages(sparse("update", dim, keep_count(dim, self.keep_ratio)), dim)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> DGCState:
        return DGCState(x[0].clone(), torch.zeros_like(x), torch.zeros_like(x))

    def step(self, x: torch.Tensor, state: DGCState, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, DGCState]:
        dim = x.shape[1]
        k = keep_count(dim, self.keep_ratio)
        momentum = self.momentum * state.momentum + grad_fn(x)
        accumulated = state.accumulated + momentum
        selected = topk_mask(accumulated, k)
        sent, accumulated = split(accumulated, selected)
        momentum = momentum - momentum * selected.to(x.dtype)  # zero the sent coordinates (exact)
        x, global_model = sgd_round(x, state.global_model, sent, links, self.lr)
        return x, DGCState(global_model, momentum, accumulated)
