"""SwarmSGD as published: random local steps between pairwise averagings (Nadiradze, Sabour, Davies, Li &
Alistarh, "Asynchronous Decentralized SGD with Quantized and Local Updates", NeurIPS 2021), over unicast 802.11a.

The paper: an interaction picks a random edge {i, j}; both nodes run their local SGD steps, a random number
with mean H (geometric), on their own models, and average: x_i, x_j <- (x_i + x_j) / 2; nobody waits.

On the message core (``schedule = "async"``, ``peers = "pairwise"``, ``learner.pairwise``): device i's loop
is h_k local steps, h_k geometric on {1, 2, ...} with mean H = ``local_steps``, keyed by (seed, i, k)
(``messages.draws.local_step_counts``: the message core times the loop with the same draw, h_k x the step
time, at least ``async_period_s``); then a request carrying its model to a neighbour drawn uniformly, the
partner's reply, and each side's half of the average when its message arrives, as AD-PSGD's
(``learner.algorithms.adpsgd``). Reconstructions: the local steps run from the model the loop began with and
their update is added when the loop ends (so halves that arrived meanwhile are kept, as in the paper's
non-blocking form); the partner averages the model it holds, its own local steps in progress applied when
its loop ends; no quantization. Loss and the one-sided rule as AD-PSGD's. Payload: the dense float32 model,
d x 4 bytes, each way. The broadcast reading stays as ``swarm_sgd_broadcast``; the round-based variant the
HyperPrism comparison ran as ``swarmsgd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from learner.asynchronous import sgd_steps
from learner.pairwise import PairwiseExchange


@dataclass(frozen=True)
class SwarmSGDAsync(PairwiseExchange):
    lr: float = 0.1
    local_steps: int = 2  # H: the mean of the geometric count
    name: str = "swarm_sgd"
    random_local_steps: ClassVar[bool] = True

    def local_step(self, x: torch.Tensor, state: int, grad_fn, active: torch.Tensor) -> tuple[torch.Tensor, int]:
        """One of the loop's drawn local steps (``learner.pairwise.run_pairwise`` runs as many as drawn)."""
        return sgd_steps(x, grad_fn, self.lr, 1, active), state
