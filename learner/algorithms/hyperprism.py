"""HyperPrism: weighted power-mean aggregation in a mirror space, with fixed or learned exponents.

Paper: H. Du, Y. Chen, R. Yang, Y. Li, L. Kong, "HyperPrism: An Adaptive
Non-linear Aggregation Framework for Distributed Machine Learning over Non-IID
Data and Time-varying Communication Links", NeurIPS 2024.

Round t, device j with exponent p_j (learner/powermean.py)::

    g_j  = stochastic gradient of f_j at x_j
    u_j  = sum_i W_ij sign(x_i) |x_i|^p_j        map phi_p to the mirror space, weighted mean
    x_j <- sign(u_j) |u_j|^(1/p_j) - lr * g_j    inverse map, local step

over the devices that delivered to j both ways plus j itself, W the
Metropolis-Hastings matrix of ``mask & mask.T`` (as D-PSGD here). With p = 1
this *is* D-PSGD. Payload: the dense float32 model, d x 4 bytes; every
receiver applies its own exponent to the raw models it heard.

Two registry entries:

- ``hyperprism-fixed`` (:class:`HyperPrismFixed`): one exponent p for every
  device, layer and round.
- ``hyperprism`` (:class:`HyperPrism`): per-device exponents from a per-device
  hypernetwork HN_j: 3 fully connected layers (ReLU) and two softmax heads over
  the candidate exponents c = (1, 3, ..., p_max). Its input is a random
  embedding v_j and a summary of the local gradient; its outputs are
  p_rep,j = softmax(head_rep) . c for the representation layers and
  p_dec,j = softmax(head_dec) . c for the decision layers. The layer split comes
  from ``model.part_mask`` given to ``init`` (no model: every coordinate is
  "decision"). Logistic regression is all decision: p_rep then acts on no
  coordinate, gets a zero hypergradient and stays at its initial value.
  v_j and HN_j's weights take one gradient-descent step every round.

Reconstructed (the paper's text was not available, only a summary):

- The order: the gradient is taken at x_j(t) and applied after the inverse
  map (D-PSGD's order, so that p = 1 equals D-PSGD exactly). The summary lists
  the local update first; adapt-then-combine would be the other reading.
- The exponents: a softmax over the positive odd integers up to p_max (the
  earlier paper of the same group uses odd integer exponents); the expected
  exponent softmax . c makes p continuous, hence differentiable.
- The hypernetwork's input: the full gradient (d numbers) would make HN_j
  larger than the model, so it sees [v_j, log(1 + ||g_rep,j||), log(1 + ||g_dec,j||)].
- Its training signal: the local loss after aggregation, L_j(p_j) = f_j(x_j(t+1)),
  with dL/dp_j,part = sum over the part's coordinates of g_j(t+1) * dM_j/dp
  (dM/dp computed in closed form by ``power_mean(..., with_dp=True)``). The
  gradient g_j(t+1) is the one the next round draws anyway, so HN_j is updated
  one round late (from round 2 on) and no extra gradient is spent; the
  recomputed HN forward pass uses v_j and the round-t gradient summary.
- Initialisation: PyTorch's default uniform(+-1/sqrt(fan_in)) weights and
  v_j ~ N(0, I), drawn from a generator seeded by ``init``'s seed, so the
  initial exponents are near the candidates' mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from learner.algorithms.base import FLOAT32_BYTES, GradFn, Links, StatelessDenseModel, check_range
from learner.mixing import metropolis_hastings
from learner.powermean import power_mean


def _check_lr(lr: float) -> None:
    check_range("lr", lr, 0.0, 100.0)


def _mix(x: torch.Tensor, links: Links, exponents: torch.Tensor | float,
         with_dp: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The power mean over this round's two-way links (one exchange of the dense model)."""
    weights = metropolis_hastings(links.exchange(x.shape[1] * FLOAT32_BYTES), torch.float64)
    return power_mean(x, weights, exponents, with_dp=with_dp)


@dataclass(frozen=True)
class HyperPrismFixed(StatelessDenseModel):
    """HyperPrism with one fixed exponent p for every device, layer and round."""

    lr: float = 0.01
    p: float = 3.0
    name: str = "hyperprism-fixed"

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        check_range("p", self.p, 1.0, 64.0, low_open=False)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        grad = grad_fn(x)
        return _mix(x, links, self.p) - self.lr * grad, None


class HyperPrismState(NamedTuple):
    net: tuple[torch.Tensor, ...]  # the hypernetworks' weights, batched over devices (HyperPrism._net_shapes)
    embedding: torch.Tensor  # (N, E) the random embeddings v_j
    representation: torch.Tensor  # (d,) bool: coordinates of the representation layers
    exponents: torch.Tensor  # (N, 2) [p_rep, p_dec] used in the last round
    features: torch.Tensor | None  # (N, 2) gradient summary the last exponents came from
    slope: torch.Tensor | None  # (N, d) dM/dp of the last aggregation


@dataclass(frozen=True)
class HyperPrism:
    """HyperPrism with per-device exponents for the representation and decision layers from a hypernetwork."""

    lr: float = 0.01
    p_max: int = 9  # candidate exponents 1, 3, ..., p_max
    hn_lr: float = 50.0  # gradient-descent step of the hypernetworks and embeddings (hypergradients are ~1e-3)
    embedding_dim: int = 8
    hn_hidden: int = 16
    name: str = "hyperprism"

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        check_range("p_max", self.p_max, 1, 63, low_open=False)
        if self.p_max % 2 != 1:
            raise ValueError(f"p_max: {self.p_max!r} is not allowed; expected an odd integer in [1, 63]")
        check_range("hn_lr", self.hn_lr, 0.0, 100.0, low_open=False)
        check_range("embedding_dim", self.embedding_dim, 1, 1024, low_open=False)
        check_range("hn_hidden", self.hn_hidden, 1, 1024, low_open=False)

    @property
    def candidates(self) -> torch.Tensor:
        return torch.arange(1, self.p_max + 1, 2, dtype=torch.float64)

    def exchange_payloads(self, dim: int) -> tuple[int, ...]:
        return (dim * FLOAT32_BYTES,)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> HyperPrismState:
        n, d = x.shape
        generator = torch.Generator().manual_seed(seed)
        net = tuple(_uniform((n, *shape), fan_in, generator) for shape, fan_in in self._net_shapes())
        embedding = torch.randn(n, self.embedding_dim, generator=generator, dtype=torch.float64)
        representation = (model.part_mask("representation") if model is not None
                          else torch.zeros(d, dtype=torch.bool))
        if representation.shape != (d,):
            raise ValueError(f"hyperprism: the model has {representation.shape[0]} parameters, x has {d}")
        features = torch.zeros(n, 2, dtype=torch.float64)
        exponents = _exponents(net, embedding, features, self.candidates).detach()
        return HyperPrismState(net, embedding, representation, exponents, None, None)

    def step(self, x: torch.Tensor, state: HyperPrismState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, HyperPrismState]:
        grad = grad_fn(x)
        net, embedding = state.net, state.embedding
        if state.slope is not None:
            net, embedding = self._train_hypernetworks(state, grad)
        features = _gradient_features(grad, state.representation)
        with torch.no_grad():
            exponents = _exponents(net, embedding, features, self.candidates)
        per_coordinate = torch.where(state.representation, exponents[:, :1], exponents[:, 1:])
        mean, slope = _mix(x, links, per_coordinate, with_dp=True)
        new_state = HyperPrismState(net, embedding, state.representation, exponents, features, slope)
        return mean - self.lr * grad, new_state

    def _train_hypernetworks(self, state: HyperPrismState,
                             grad: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """One gradient step on L_j(p_j) = f_j(x_j(t+1)): dL/dp_part = sum over the part of g_j(t+1) * dM_j/dp."""
        contribution = (grad * state.slope).to(torch.float64)
        hyper = torch.stack([contribution[:, state.representation].sum(1),
                             contribution[:, ~state.representation].sum(1)], dim=1)  # (N, 2)
        leaves = [t.detach().requires_grad_(True) for t in (*state.net, state.embedding)]
        with torch.enable_grad():
            exponents = _exponents(tuple(leaves[:-1]), leaves[-1], state.features, self.candidates)
            grads = torch.autograd.grad((exponents * hyper).sum(), leaves)
        updated = [(leaf - self.hn_lr * g).detach() for leaf, g in zip(leaves, grads)]
        return tuple(updated[:-1]), updated[-1]

    def _net_shapes(self) -> list[tuple[tuple[int, ...], int]]:
        """(shape per device, fan_in) of W1, b1, W2, b2, W3, b3, head_rep (W, b), head_dec (W, b)."""
        inputs, hidden, heads = self.embedding_dim + 2, self.hn_hidden, len(self.candidates)
        shapes = []
        for fan_in, fan_out in ((inputs, hidden), (hidden, hidden), (hidden, hidden), (hidden, heads),
                                (hidden, heads)):
            shapes += [((fan_out, fan_in), fan_in), ((fan_out,), fan_in)]
        return shapes


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def _gradient_features(grad: torch.Tensor, representation: torch.Tensor) -> torch.Tensor:
    """[log(1 + ||g_rep||), log(1 + ||g_dec||)] per device: what the hypernetwork sees of the gradient."""
    grad = grad.to(torch.float64)
    norms = torch.stack([grad[:, representation].norm(dim=1), grad[:, ~representation].norm(dim=1)], dim=1)
    return torch.log1p(norms)


def _exponents(net: tuple[torch.Tensor, ...], embedding: torch.Tensor, features: torch.Tensor,
               candidates: torch.Tensor) -> torch.Tensor:
    """Every device's hypernetwork at once: (N, 2) expected exponents [p_rep, p_dec]."""
    w1, b1, w2, b2, w3, b3, w_rep, b_rep, w_dec, b_dec = net
    hidden = torch.cat([embedding, features], dim=1)
    for weight, bias in ((w1, b1), (w2, b2), (w3, b3)):
        hidden = torch.relu(torch.einsum("noi,ni->no", weight, hidden) + bias)
    heads = [torch.softmax(torch.einsum("noi,ni->no", w, hidden) + b, dim=1) @ candidates
             for w, b in ((w_rep, b_rep), (w_dec, b_dec))]
    return torch.stack(heads, dim=1)
