"""eSGD (Tao & Li, "eSGD: Communication Efficient Distributed Deep Learning on the Edge", HotEdge 2018).

Each device sends k = keep_ratio x d coordinates of its momentum-accumulated
gradient, chosen by a learned importance H (selection rules in
``learner.compress``: random in rounds 0-1; then keep last round's selection
and raise its H if the device's mini-batch loss fell, else resample ∝ H; then
unsent coordinates with |a| > mean(|g|) replace the lowest-H selected ones)::

    a_i = beta r_i + g_i(x_i)
    s_i = a_i on S_i (sent),  r_i <- a_i off S_i (sent coordinates reset)
    x_j <- x_j - lr * mean_{i in {j} ∪ {i : mask[i, j]}} s_i

The paper aggregates at a parameter server; here device j applies the
receiver mean of the sparse updates it holds (its own and those delivered to
it). There is no model averaging, so models drift apart (see
``consensus_distance``). The loss comes from ``gradients_and_losses``; with a
``grad_fn`` that reports no loss, 0.5 ||g_i||^2 stands in for it. Constant lr
(the paper decays 0.1 / (2e) per epoch e).

Payload: ``encoded_bytes(k, d)``, the same every round, so offline traces work
(one per k). Randomness: a torch.Generator seeded in ``init`` kept in the state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from learner.algorithms.base import GradFn, Links, check_range, gradients_and_losses
from learner.compress import encoded_bytes, esgd_select, keep_count, replace_lowest_importance, split
from learner.mixing import receiver_mean


@dataclass(frozen=True)
class ESGDState:
    round: int
    selection: torch.Tensor   # (N, d) bool: last round's sent coordinates
    importance: torch.Tensor  # (N, d) H
    residual: torch.Tensor    # (N, d) r
    loss: torch.Tensor        # (N,) last round's loss (inf before the first)
    generator_state: torch.Tensor


@dataclass(frozen=True)
class ESGD:
    lr: float = 0.1
    keep_ratio: float = 0.125
    beta: float = 0.9
    importance_step: float = 1.0
    name: str = "esgd"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("keep_ratio", self.keep_ratio, 0.0, 1.0)
        check_range("beta", self.beta, 0.0, 1.0, low_open=False)
        check_range("importance_step", self.importance_step, 0.0, 1e6, low_open=False)

    def exchange_payloads(self, dim: int) -> tuple[int, ...]:
        return (encoded_bytes(keep_count(dim, self.keep_ratio), dim),)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> ESGDState:
        n = x.shape[0]
        return ESGDState(0, torch.zeros_like(x, dtype=torch.bool), torch.ones_like(x), torch.zeros_like(x),
                         torch.full((n,), float("inf"), dtype=x.dtype),
                         torch.Generator().manual_seed(seed).get_state())

    def step(self, x: torch.Tensor, state: ESGDState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, ESGDState]:
        dim = x.shape[1]
        k = keep_count(dim, self.keep_ratio)
        grad, loss = gradients_and_losses(grad_fn, x)
        if loss is None:
            loss = 0.5 * grad.pow(2).sum(1)
        generator = torch.Generator()
        generator.set_state(state.generator_state)
        uniforms = torch.rand(dim, generator=generator, dtype=torch.float64)
        selection, importance = esgd_select(state.round, k, state.selection, state.importance, loss, state.loss,
                                            uniforms, self.importance_step)
        accumulated = self.beta * state.residual + grad
        selection = replace_lowest_importance(selection, importance, accumulated, grad.abs().mean(1))
        sent, residual = split(accumulated, selection)
        mask = links.exchange(encoded_bytes(k, dim))
        new_state = replace(state, round=state.round + 1, selection=selection, importance=importance,
                            residual=residual, loss=loss.detach().clone(), generator_state=generator.get_state())
        return x - self.lr * receiver_mean(mask, sent), new_state
