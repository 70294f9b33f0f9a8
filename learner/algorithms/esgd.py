"""eSGD (Tao & Li, "eSGD: Communication Efficient Distributed Deep Learning on the Edge", HotEdge 2018),
on the parameter server it was published on.

Each device uploads k = keep_ratio x d coordinates of its momentum-accumulated
gradient, chosen by a learned importance H (selection rules in
``learner.compress``: random in rounds 0-1; then keep last round's selection
and raise its H if the device's mini-batch loss fell, else resample ∝ H; then
unsent coordinates with |a| > mean(|g|) replace the lowest-H selected ones);
the server sums what arrived into the one global model and sends it back
(``learner/server.py``)::

    a_j = beta r_j + grad f_j(x_j)
    s_j = a_j on S_j (sent),  r_j <- a_j off S_j (sent coordinates reset)
    w <- w - (lr_t / N) * sum_{j : upload arrived} s_j;   x_j <- w if the download arrived

The loss comes from ``gradients_and_losses``; with a ``grad_fn`` that reports
no loss, 0.5 ||g_j||^2 stands in for it. Learning rate: constant, or the
paper's schedule lr / (2 e) in epoch e = 1 + round // ``epoch_rounds`` when
``epoch_rounds`` > 0 (the paper's lr is 0.1).

Payloads: up ``encoded_bytes(k, d)``, the same every round (offline traces
work, one per k); down the dense model. Randomness: a torch.Generator seeded
in ``init`` kept in the state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from learner.algorithms.base import GradFn, Links, Message, check_integer, check_range, gradients_and_losses, sparse
from learner.compress import esgd_select, keep_count, replace_lowest_importance, split
from learner.server import SERVER_ARCHITECTURE, server_messages, sgd_round


@dataclass(frozen=True)
class ESGDState:
    round: int
    global_model: torch.Tensor  # (d,) the server's model
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
    epoch_rounds: int = 0  # > 0: lr / (2 e) in epoch e = 1 + round // epoch_rounds (the paper's schedule)
    name: str = "esgd"
    architecture = SERVER_ARCHITECTURE

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("keep_ratio", self.keep_ratio, 0.0, 1.0)
        check_range("beta", self.beta, 0.0, 1.0, low_open=False)
        check_range("importance_step", self.importance_step, 0.0, 1e6, low_open=False)
        check_integer("epoch_rounds", self.epoch_rounds, 0, 100_000)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return server_messages(sparse("update", dim, keep_count(dim, self.keep_ratio)), dim)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> ESGDState:
        n = x.shape[0]
        return ESGDState(0, x[0].clone(), torch.zeros_like(x, dtype=torch.bool), torch.ones_like(x),
                         torch.zeros_like(x), torch.full((n,), float("inf"), dtype=x.dtype),
                         torch.Generator().manual_seed(seed).get_state())

    def learning_rate(self, round_index: int) -> float:
        if self.epoch_rounds == 0:
            return self.lr
        return self.lr / (2 * (1 + round_index // self.epoch_rounds))

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
        x, global_model = sgd_round(x, state.global_model, sent, links, self.learning_rate(state.round))
        return x, replace(state, round=state.round + 1, global_model=global_model, selection=selection,
                          importance=importance, residual=residual, loss=loss.detach().clone(),
                          generator_state=generator.get_state())
