"""FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
AISTATS 2017): the central reference, through the access point's server.

Each round a fraction C of the devices (m = max(1, round(C N)), drawn without
replacement) runs E local SGD steps from its copy of the model, uploads the
model, and the server averages the models it received, weighted by the
devices' sample counts n_j; then it sends the average down to every device
(``learner/server.py``)::

    for j in S_t:  x_j <- x_j - lr grad f_j(x_j)   (E times)
    R_t = {j in S_t : upload arrived};   w <- sum_{j in R_t} n_j x_j / sum_{j in R_t} n_j   (w kept if R_t empty)
    x_j <- w if the download arrived, else x_j (its stale copy: it trains from there next time)

Payloads: up the dense model (devices outside S_t send nothing), down the
dense model. With C < 1 the set of senders changes every round, so the
upload needs ``network.mode = "online"``; C = 1 replays offline traces.
Devices not in S_t do not train (the runner's batched oracle still computes
their gradients, and charges their compute time: a small overcount with
C < 1). Reconstructions: E counts local steps (the paper's E counts epochs of
its B-sized mini-batches); a device whose upload is lost still keeps its
trained model until a download reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, check_integer, check_range, dense
from learner.server import SERVER_ARCHITECTURE, download, server_messages, upload


@dataclass(frozen=True)
class FedAvgState:
    global_model: torch.Tensor  # (d,)
    weights: torch.Tensor  # (N,) sample counts n_j (ones when not given)
    generator_state: torch.Tensor


@dataclass(frozen=True)
class FedAvg:
    lr: float = 0.1
    local_steps: int = 5
    client_fraction: float = 1.0
    name: str = "fedavg"
    architecture = SERVER_ARCHITECTURE

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("local_steps", self.local_steps, 1, 1000)
        check_range("client_fraction", self.client_fraction, 0.0, 1.0)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return server_messages(dense("model", dim), dim, per_sender=self.client_fraction < 1.0)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None, samples=None) -> FedAvgState:
        weights = torch.ones(x.shape[0], dtype=torch.float64) if samples is None else \
            torch.as_tensor(samples, dtype=torch.float64)
        return FedAvgState(x[0].clone(), weights, torch.Generator().manual_seed(seed).get_state())

    def step(self, x: torch.Tensor, state: FedAvgState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, FedAvgState]:
        n, dim = x.shape
        generator = torch.Generator()
        generator.set_state(state.generator_state)
        chosen = torch.zeros(n, dtype=torch.bool)
        chosen[torch.randperm(n, generator=generator)[:max(1, round(self.client_fraction * n))]] = True
        for _ in range(self.local_steps):
            x = torch.where(chosen[:, None], x - self.lr * grad_fn(x), x)
        received = upload(links, n, senders=chosen) & chosen
        global_model = state.global_model
        if received.any():
            weights = state.weights[received]
            global_model = ((weights[:, None] * x[received].double()).sum(0) / weights.sum()).to(x.dtype)
        got = download(links, n)
        x = torch.where(got[:, None], global_model, x)
        return x, FedAvgState(global_model, state.weights, generator.get_state())
