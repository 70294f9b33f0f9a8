"""The uniform interface every aggregation algorithm implements.

An algorithm is a frozen dataclass of hyperparameters (checked in
``__post_init__``) with

- ``exchange_payloads(dim) -> tuple[int, ...]``: bytes each device sends in each
  exchange of a round (one entry per exchange), so the bridge can simulate the
  real traffic;
- ``init(x, seed=0, model=None) -> state``: the algorithm's extra state for
  parameters x (N, d). An algorithm that draws random numbers keeps its own
  generator, seeded from ``seed``, in the state, so a run is reproducible and
  tests can reset it. ``model`` (a ``learner.models.BatchedModel``) is given by
  the runner for algorithms that treat layers differently (``model.part_mask``);
  others ignore it;
- ``step(x, state, grad_fn, links) -> (x_new, state_new)``: one round. It draws
  gradients through ``grad_fn(x) -> (N, d)`` and learns who heard whom only
  through ``links.exchange(payload_bytes)``, called once per exchange, in order.
  An algorithm that also needs each device's mini-batch loss (eSGD) calls
  ``gradients_and_losses(grad_fn, x)``: the runner's ``grad_fn`` carries a
  ``with_loss(x) -> (grad (N, d), loss (N,))`` attribute; a plain ``grad_fn``
  (tests, other callers) gives ``None`` for the loss.

``step`` keeps no hidden state on ``self``: everything that carries over
between rounds lives in ``state``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from learner.interface import FLOAT32_BYTES, Links

GradFn = Callable[[torch.Tensor], torch.Tensor]
__all__ = ["FLOAT32_BYTES", "Links", "GradFn", "Algorithm"]  # FLOAT32_BYTES and Links live in learner.interface


class Algorithm(Protocol):
    name: str

    def exchange_payloads(self, dim: int) -> tuple[int, ...]: ...

    def init(self, x: torch.Tensor, seed: int = 0, model: Any = None) -> Any: ...

    def step(self, x: torch.Tensor, state: Any, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, Any]: ...


class StatelessDenseModel:
    """The interface for algorithms that keep no state and send one dense float32 vector a round
    (D-PSGD and its relatives): what they differ in is ``step``."""

    def exchange_payloads(self, dim: int) -> tuple[int, ...]:
        return (dim * FLOAT32_BYTES,)

    def init(self, x: torch.Tensor, seed: int = 0, model: Any = None) -> None:
        return None


def gradients_and_losses(grad_fn: GradFn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(grad (N, d), per-device mini-batch loss (N,) or None when ``grad_fn`` cannot report losses)."""
    with_loss = getattr(grad_fn, "with_loss", None)
    if with_loss is None:
        return grad_fn(x), None
    return with_loss(x)


def check_range(field: str, value: float, low: float, high: float, *, low_open: bool = True) -> None:
    """Raise ValueError naming ``field`` unless value lies in (low, high] (or [low, high])."""
    below = value <= low if low_open else value < low
    if below or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{field}: {value!r} is outside {bracket}{low}, {high}]")


def check_integer(field: str, value: int, low: int, high: int) -> None:
    """Raise ValueError naming ``field`` unless value is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field}: {value!r} is not an integer in [{low}, {high}]")


MAX_EXCHANGES_PER_ROUND = 64


def mean_gradient(grad_fn: GradFn, x: torch.Tensor, batches: int) -> torch.Tensor:
    """Mean of ``batches`` stochastic gradients at x: ``batches`` grad_fn calls, each a fresh mini-batch."""
    total = grad_fn(x)
    for _ in range(batches - 1):
        total = total + grad_fn(x)
    return total / batches
