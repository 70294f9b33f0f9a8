"""HyperPrism: weighted power-mean aggregation in a mirror space, with fixed or learned exponents.

Paper: H. Du, Y. Chen, R. Yang, Y. Li, L. Kong, "HyperPrism: An Adaptive
Non-linear Aggregation Framework for Distributed Machine Learning over Non-IID
Data and Time-varying Communication Links", NeurIPS 2024.

**Algorithm 1 (the default, ``variant = "algorithm1"``)**, round t on device i
with its own exponent p_i (one per model part, below)::

    w_i <- x_i - lr * g_i(x_i)                     local step in the primal space
    m_i  = sign(w_i) |w_i|^p_i                      map with the device's OWN exponent; m_i is sent
    u_i  = sum_j a_ij m_j                           over the devices i heard both ways, and itself
    x_i <- sign(u_i) |u_i|^(1/p_i)                  inverse map with its own exponent

a_ij = min(1/(N_i+1), 1/(N_j+1)) = 1/(1 + max(N_i, N_j)) on two-way links,
a_ii = 1 - sum_j a_ij: Metropolis-Hastings on ``mask & mask.T``, as D-PSGD
here. With p = 1 this is D-PSGD in adapt-then-combine form,
x <- W^T (x - lr g) (a test checks it). Since each sender maps its own model,
aggregation is one weighted sum of mapped vectors, a matrix product.

**The paper contradicts itself.** Its Eq. (6) and proof take the gradient
step in the mirror space instead: x_i <- [grad phi]^-1(sum_j a_ij m_j(x_j) -
lr g_i(x_i)). That order is the named option ``variant = "eq6"``. The
receiver-side reconstruction this testbed used before the paper's text was
available, every receiver applying its own exponent to the raw models it
heard, then the local step after the inverse map (D-PSGD's order), stays as
``variant = "receiver"`` (learner/powermean.py): it keeps the earlier
measurements reproducible and shows what applying the exponent at the
receiver changes; it costs one power per (receiver, sender) pair.

Payload: the dense float32 vector each device sends (the mapped model, or the
model itself for ``receiver``), d x 4 bytes. The paper also sends the
neighbour count N_i for the weights; like every Metropolis-Hastings algorithm
here, its 4 bytes are not charged (the testbed computes the weights from the
delivered mask).

Numerics: the maps run in float64 (|w|^p over- and underflows float32 long
before p = 9; float64 holds |w| up to 1e4 at p = 63). A coordinate whose
|w|^p underflows float64 (|w| < 1e-5 at p = 63) is treated as 0. The result
is cast back to the models' dtype.

Two registry entries:

- ``hyperprism-fixed`` (:class:`HyperPrismFixed`): one exponent p for every
  device, part and round.
- ``hyperprism`` (:class:`HyperPrism`): per-device exponents from a per-device
  hypernetwork HN_i(v_i; psi_i), as published: a random embedding v_i, 3 fully
  connected layers of ``hn_hidden`` = 64 units (ReLU) and two softmax heads
  over the positive odd exponents c = (1, 3, ..., p_max); p_rep,i =
  softmax(head_rep) . c for the representation layers, p_dec,i for the
  decision layers (``model.part_mask``; logistic regression is all decision,
  so p_rep acts on nothing there, which is why the paper's CNN matters).

Still our choice (the paper does not say):

- The candidates' maximum ``p_max`` = 9 (the appendix shows p = 9 and 15) and
  the expected exponent softmax . c, which makes p continuous and so
  differentiable for the objective's gradient steps.
- The training signal: the paper minimises sum_i f_i(w_i^{HN_i(v_i; psi_i)})
  with gradient steps on v_i and psi_i "with the same eta"; locally device i
  can only follow its own loss after aggregation, L_i = f_i(x_i(t+1)), through
  its own exponent: dL_i/dp = sum over the part's coordinates of
  g_i(t+1) * dx_i(t+1)/dp, with dx/dp in closed form (the inverse map and the
  own term a_ii m_i; other devices' exponents are theirs to learn). g_i(t+1)
  is the gradient the next round draws anyway, so HN_i steps one round late
  and no gradient is spent on it. ``hn_lr`` defaults to the paper's eta, 0.01.
- Initialisation: PyTorch's default uniform(+-1/sqrt(fan_in)) weights and
  v_i ~ N(0, I) of ``embedding_dim`` = 8, from a generator seeded by
  ``init``'s seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from learner.algorithms.base import GradFn, Links, Message, StatelessDenseModel, check_range, model_message
from learner.mixing import metropolis_hastings
from learner.powermean import power_mean

VARIANTS = ("algorithm1", "eq6", "receiver")


def _check(lr: float, variant: str) -> None:
    check_range("lr", lr, 0.0, 100.0)
    if variant not in VARIANTS:
        raise ValueError(f"variant: {variant!r} is not allowed; expected one of {', '.join(VARIANTS)}")


LN_FLOOR = math.log(1e-300)  # ln|.| of a zero coordinate in dx/dp: finite, so 0 * ln stays 0


def signed_exp(log_magnitude: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """sign(like) exp(log_magnitude), in place in ``log_magnitude``: the mirror map phi_p(w) =
    sign(w) exp(p ln|w|) and its inverse sign(u) exp(ln|u| / p), float64 (exp and ln run 2-3x faster
    than pow here; |w| = 0 gives ln = -inf and exp = 0)."""
    return log_magnitude.exp_().mul_(torch.sign(like))


def _scaled_copy(values: torch.Tensor, factor: float) -> torch.Tensor:
    """factor * values in a new float64 tensor (never in the caller's, even when it is float64)."""
    return values.to(torch.float64, copy=True).mul_(factor)


def hyperprism_round(x: torch.Tensor, grad: torch.Tensor, exponents: torch.Tensor | float, links: Links,
                     lr: float, variant: str, with_slope: bool = False):
    """One HyperPrism round of every device: (x_new, dx_new/dp or None), dx/dp along each device's own exponent.

    ``exponents``: a number, or (N, d) float64 (each coordinate's exponent: its part's). The maps work in
    place on a handful of (N, d) float64 buffers: each fresh one is a pass over memory."""
    dtype = x.dtype
    weights = metropolis_hastings(links.exchange(), torch.float64)
    if variant == "receiver":
        mean = power_mean(x, weights, exponents, with_dp=with_slope)
        mean, slope = mean if with_slope else (mean, None)
        return mean - lr * grad, slope
    p = exponents
    base = x.to(torch.float64, copy=True)
    if variant == "algorithm1":
        base.sub_(_scaled_copy(grad, lr))  # local step first
    log_base = torch.abs(base).log_()
    mapped = signed_exp(log_base * p if with_slope else log_base.mul_(p), base)
    u = weights.T @ mapped
    if variant == "eq6":  # the gradient step in the mirror space
        u.sub_(_scaled_copy(grad, lr))
    log_u = torch.abs(u).log_()
    new = signed_exp(log_u / p if with_slope else log_u.div_(p), u)
    slope = None
    if with_slope:
        # d/dp of sign(u)|u|^(1/p), u = a_ii m_i(p) + (terms of other devices): the own path only,
        # new * (-ln|u| / p^2 + a_ii m_i ln|w_i| / (p u)), 0 where u = 0.
        zero = u == 0
        own = (weights.diagonal()[:, None] * mapped).mul_(log_base.clamp_min_(LN_FLOOR))
        own.div_(u.masked_fill(zero, 1.0).mul_(p))
        rate = log_u.clamp_min_(LN_FLOOR).neg_().div_(p ** 2).add_(own)
        slope = rate.mul_(new).masked_fill_(zero, 0.0)
    return new.to(dtype), slope


@dataclass(frozen=True)
class HyperPrismFixed(StatelessDenseModel):
    """HyperPrism with one fixed exponent p for every device, part and round."""

    lr: float = 0.01
    p: float = 3.0
    variant: str = "algorithm1"
    name: str = "hyperprism-fixed"

    def __post_init__(self) -> None:
        _check(self.lr, self.variant)
        check_range("p", self.p, 1.0, 64.0, low_open=False)

    def step(self, x: torch.Tensor, state: None, grad_fn: GradFn, links: Links) -> tuple[torch.Tensor, None]:
        new, _ = hyperprism_round(x, grad_fn(x), float(self.p), links, self.lr, self.variant)
        return new, None


class HyperPrismState(NamedTuple):
    net: tuple[torch.Tensor, ...]  # the hypernetworks' weights, batched over devices (HyperPrism._net_shapes)
    embedding: torch.Tensor  # (N, E) the random embeddings v_i
    representation: torch.Tensor  # (d,) bool: coordinates of the representation layers
    exponents: torch.Tensor  # (N, 2) [p_rep, p_dec] used in the last round
    slope: torch.Tensor | None  # (N, d) dx/dp of the last round, along each coordinate's own exponent


@dataclass(frozen=True)
class HyperPrism:
    """HyperPrism with per-device exponents for the representation and decision layers from a hypernetwork."""

    lr: float = 0.01
    p_max: int = 9  # candidate exponents 1, 3, ..., p_max
    hn_lr: float = 0.01  # the paper trains v_i and psi_i with the same eta as the model
    embedding_dim: int = 8
    hn_hidden: int = 64  # the paper's 3 fully connected layers of 64 units
    variant: str = "algorithm1"
    name: str = "hyperprism"

    def __post_init__(self) -> None:
        _check(self.lr, self.variant)
        check_range("p_max", self.p_max, 1, 63, low_open=False)
        if self.p_max % 2 != 1:
            raise ValueError(f"p_max: {self.p_max!r} is not allowed; expected an odd integer in [1, 63]")
        check_range("hn_lr", self.hn_lr, 0.0, 100.0, low_open=False)
        check_range("embedding_dim", self.embedding_dim, 1, 1024, low_open=False)
        check_range("hn_hidden", self.hn_hidden, 1, 1024, low_open=False)

    @property
    def candidates(self) -> torch.Tensor:
        return torch.arange(1, self.p_max + 1, 2, dtype=torch.float64)

    def messages(self, dim: int) -> tuple[Message, ...]:
        return model_message(dim)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> HyperPrismState:
        n, d = x.shape
        generator = torch.Generator().manual_seed(seed)
        net = tuple(_uniform((n, *shape), fan_in, generator) for shape, fan_in in self._net_shapes())
        embedding = torch.randn(n, self.embedding_dim, generator=generator, dtype=torch.float64)
        representation = (model.part_mask("representation") if model is not None
                          else torch.zeros(d, dtype=torch.bool))
        if representation.shape != (d,):
            raise ValueError(f"hyperprism: the model has {representation.shape[0]} parameters, x has {d}")
        exponents = _exponents(net, embedding, self.candidates).detach()
        return HyperPrismState(net, embedding, representation, exponents, None)

    def step(self, x: torch.Tensor, state: HyperPrismState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, HyperPrismState]:
        grad = grad_fn(x)
        net, embedding = state.net, state.embedding
        if state.slope is not None:
            net, embedding = self._train_hypernetworks(state, grad)
        with torch.no_grad():
            exponents = _exponents(net, embedding, self.candidates)
        per_coordinate = torch.where(state.representation, exponents[:, :1], exponents[:, 1:])
        new, slope = hyperprism_round(x, grad, per_coordinate, links, self.lr, self.variant, with_slope=True)
        return new, HyperPrismState(net, embedding, state.representation, exponents, slope)

    def _train_hypernetworks(self, state: HyperPrismState,
                             grad: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """One gradient step on L_i(p_i) = f_i(x_i(t+1)): dL/dp_part = sum over the part of g_i(t+1) dx_i/dp."""
        contribution = (grad.to(torch.float64) * state.slope.to(torch.float64))
        contribution = torch.nan_to_num(contribution, nan=0.0, posinf=0.0, neginf=0.0)
        hyper = torch.stack([contribution[:, state.representation].sum(1),
                             contribution[:, ~state.representation].sum(1)], dim=1)  # (N, 2)
        leaves = [t.detach().requires_grad_(True) for t in (*state.net, state.embedding)]
        with torch.enable_grad():
            exponents = _exponents(tuple(leaves[:-1]), leaves[-1], self.candidates)
            grads = torch.autograd.grad((exponents * hyper).sum(), leaves)
        updated = [(leaf - self.hn_lr * g).detach() for leaf, g in zip(leaves, grads)]
        return tuple(updated[:-1]), updated[-1]

    def _net_shapes(self) -> list[tuple[tuple[int, ...], int]]:
        """(shape per device, fan_in) of W1, b1, W2, b2, W3, b3, head_rep (W, b), head_dec (W, b)."""
        inputs, hidden, heads = self.embedding_dim, self.hn_hidden, len(self.candidates)
        shapes = []
        for fan_in, fan_out in ((inputs, hidden), (hidden, hidden), (hidden, hidden), (hidden, heads),
                                (hidden, heads)):
            shapes += [((fan_out, fan_in), fan_in), ((fan_out,), fan_in)]
        return shapes


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def _exponents(net: tuple[torch.Tensor, ...], embedding: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Every device's hypernetwork HN_i(v_i) at once: (N, 2) expected exponents [p_rep, p_dec]."""
    w1, b1, w2, b2, w3, b3, w_rep, b_rep, w_dec, b_dec = net
    hidden = embedding
    for weight, bias in ((w1, b1), (w2, b2), (w3, b3)):
        hidden = torch.relu(torch.einsum("noi,ni->no", weight, hidden) + bias)
    heads = [torch.softmax(torch.einsum("noi,ni->no", w, hidden) + b, dim=1) @ candidates
             for w, b in ((w_rep, b_rep), (w_dec, b_dec))]
    return torch.stack(heads, dim=1)
