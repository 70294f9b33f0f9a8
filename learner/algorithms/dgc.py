"""Top-k with error feedback / DGC (Lin et al., "Deep Gradient Compression", ICLR 2018).

Momentum correction, local accumulation and momentum factor masking; each
device sends the k = keep_ratio x d largest accumulated coordinates::

    u_i <- m u_i + g_i(x_i);   v_i <- v_i + u_i
    S_i = top-k |v_i|;  s_i = v_i on S_i;  v_i, u_i <- 0 on S_i
    x_j <- x_j - lr * mean_{i in {j} ∪ {i : mask[i, j]}} s_i

(s_i + v_i(after) = v_i(before): nothing is dropped). Decentralized
receiver-mean form of the parameter-server update, without model averaging:
models drift apart (see ``consensus_distance``). Left out from DGC: gradient
clipping and the sparsity warm-up.

Payload: ``encoded_bytes(k, d)``, constant, so offline traces work (one per k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, check_range
from learner.compress import encoded_bytes, keep_count, split, topk_mask
from learner.mixing import receiver_mean


@dataclass(frozen=True)
class DGC:
    lr: float = 0.1
    keep_ratio: float = 0.1
    momentum: float = 0.9
    name: str = "dgc"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("keep_ratio", self.keep_ratio, 0.0, 1.0)
        check_range("momentum", self.momentum, 0.0, 1.0, low_open=False)

    def exchange_payloads(self, dim: int) -> tuple[int, ...]:
        return (encoded_bytes(keep_count(dim, self.keep_ratio), dim),)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(x), torch.zeros_like(x)  # (u, v)

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        dim = x.shape[1]
        k = keep_count(dim, self.keep_ratio)
        momentum, accumulated = state
        momentum = self.momentum * momentum + grad_fn(x)
        accumulated = accumulated + momentum
        selected = topk_mask(accumulated, k)
        sent, accumulated = split(accumulated, selected)
        momentum = momentum - momentum * selected.to(x.dtype)  # zero the sent coordinates (exact)
        mask = links.exchange(encoded_bytes(k, dim))
        return x - self.lr * receiver_mean(mask, sent), (momentum, accumulated)
