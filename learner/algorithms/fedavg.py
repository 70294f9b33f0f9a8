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

Robust server (``aggregation``): ``"median"`` or ``"trimmed_mean"`` (``trim`` a side) aggregate the received
uploads coordinate-wise (Yin, Chen, Ramchandran & Bartlett, ICML 2018; unweighted: the sample counts are the
devices' own claims, which Byzantine devices could inflate; fewer than 2 trim + 1 uploads: floor((m - 1) / 2)
a side, ``learner/robust.py``). With Byzantine devices (``learner.byzantine``) the uploads carry their forged
models; on the upload exchange an attacker overhears no other upload (the mask holds device-to-server links
only), so ALIE and IPM attackers have nothing to forge from and send their own model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from learner.algorithms.base import GradFn, Links, Message, carried, check_integer, check_range, dense
from learner.robust import coordinate_median, trimmed_mean
from learner.server import SERVER_ARCHITECTURE, download, server_messages, uploaded

AGGREGATIONS = ("mean", "median", "trimmed_mean")


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
    aggregation: str = "mean"  # the server's rule: "mean" (sample-weighted), "median", "trimmed_mean"
    trim: int = 1  # aggregation = "trimmed_mean": uploads dropped per side and coordinate
    name: str = "fedavg"
    architecture = SERVER_ARCHITECTURE

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_integer("local_steps", self.local_steps, 1, 1000)
        check_range("client_fraction", self.client_fraction, 0.0, 1.0)
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation: {self.aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        check_integer("trim", self.trim, 0, 500)

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
        mask = links.exchange(senders=chosen)
        received = uploaded(mask, n) & chosen
        sent = carried(links, x, mask)
        global_model = state.global_model
        if received.any() and self.aggregation == "mean":
            weights = state.weights[received]
            global_model = ((weights[:, None] * sent[received].double()).sum(0) / weights.sum()).to(x.dtype)
        elif received.any():
            uploads = sent[received][None]
            valid = torch.ones(uploads.shape[:2], dtype=torch.bool)
            global_model = (coordinate_median(uploads, valid) if self.aggregation == "median" else
                            trimmed_mean(uploads, valid, self.trim))[0]
        got = download(links, n)
        x = torch.where(got[:, None], global_model, x)
        return x, FedAvgState(global_model, state.weights, generator.get_state())
