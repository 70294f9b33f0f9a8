"""ADOM, in its primal form ADOM+, for training with ordinary (primal) gradients.

Papers: D. Kovalev, E. Shulgin, P. Richtarik, A. Rogozin, A. Gasnikov, "ADOM:
Accelerated Decentralized Optimization Method for Time-Varying Networks",
ICML 2021 (the method HyperPrism compares against), and its primal variant
ADOM+ from D. Kovalev, E. Gasanov, A. Gasnikov, P. Richtarik, "Lower Bounds
and Optimal Algorithms for Smooth and Strongly Convex Decentralized
Optimization Over Time-Varying Networks", NeurIPS 2021.

ADOM needs the gradient of the Fenchel conjugate of each f_i, which a neural
network does not have; ADOM+ needs only grad f_i and is what this file runs.
With L(k) the gossip matrix of round k, per device (all products with L(k) are
the only communication)::

    x_g = tau1 x + (1 - tau1) x_f
    y_g = sig1 y + (1 - sig1) y_f,   z_g = sig1 z + (1 - sig1) z_f
    x+  = x + eta alpha (x_g - x+) - eta (g(x_g) - nu x_g - y+)         } solved jointly
    y+  = y + theta beta (g(x_g) - nu x_g - y+) - theta (nu^-1 (y_g + z_g) + x+)  } (linear, closed form)
    z+  = z + gamma delta (z_g - z) - L(k) (gamma nu^-1 (y_g + z_g) + m)
    m+  = gamma nu^-1 (y_g + z_g) + m - L(k) (gamma nu^-1 (y_g + z_g) + m)
    x_f+ = x_g + tau2 (x+ - x),  y_f+ = y_g + sig2 (y+ - y),  z_f+ = z_g - zeta L(k) (y_g + z_g)

with the constants of ADOM+'s convergence theorem, from mu (strong convexity), L_f = 1 / lr (smoothness)
and chi (bound on the gossip matrices' condition number lambda_max / lambda_min+):
tau2 = sqrt(mu / L_f), tau1 = 1 / (1/tau2 + 1/2), eta = 1 / (L_f tau2), alpha = nu = mu / 2,
beta = 1 / (2 L_f), sig2 = tau2 / (16 chi), sig1 = 1 / (1/sig2 + 1/2), theta = nu / (4 sig2),
gamma = nu / (14 sig2 chi^2), delta = 1 / (17 L_f), zeta = 1/2.

One exchange per round carries two vectors, (y_g + z_g) and m, so its payload
is 2 x d x 4 bytes; both L(k) products are computed from them.

As HyperPrism's comparison configures it (the defaults): condition number
kappa = L_f / mu = 10, so mu = 1 / (kappa lr), and L(k) = the Laplacian of the
exchange's two-way links divided by its largest eigenvalue
(``learner/laplacian.py``; ``gossip = "metropolis"`` uses (I - W(k)) / 2 with
W(k) Metropolis-Hastings instead, the earlier reconstruction). Both are
symmetric and PSD with kernel = consensus on each connected component (a
disconnected round breaks the paper's assumption that every L(k) has the
consensus space as its whole kernel). Still our choice: L_f from the
testbed's lr (the step 1/L_f of the smooth part) and chi, the bound on the
gossip matrices' condition number, a hyperparameter (default 10). Gradients are stochastic
mini-batch gradients. Start: y = z = m = 0 (z must start in the range of
the gossip matrices; 0 is), x_f = x. The model the runner evaluates is x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from learner.algorithms.base import GradFn, Links, Message, check_range, dense
from learner.laplacian import normalized_laplacian
from learner.mixing import gossip_laplacian

GOSSIP_MATRICES = ("laplacian", "metropolis")


class AdomState(NamedTuple):
    x_f: torch.Tensor
    y: torch.Tensor
    y_f: torch.Tensor
    z: torch.Tensor
    z_f: torch.Tensor
    m: torch.Tensor


@dataclass(frozen=True)
class ADOM:
    lr: float = 0.01  # 1 / L_f
    kappa: float = 10.0  # condition number L_f / mu (HyperPrism's setting)
    chi: float = 10.0  # condition-number bound of the gossip matrices
    gossip: str = "laplacian"  # L(k) = Laplacian / lambda_max (HyperPrism's setting), or "metropolis"
    name: str = "adom"

    def __post_init__(self) -> None:
        check_range("lr", self.lr, 0.0, 100.0)
        check_range("kappa", self.kappa, 1.0, 1e6, low_open=False)
        check_range("chi", self.chi, 1.0, 1e6, low_open=False)
        if self.gossip not in GOSSIP_MATRICES:
            raise ValueError(f"gossip: {self.gossip!r} is not allowed; expected one of {', '.join(GOSSIP_MATRICES)}")

    @property
    def mu(self) -> float:
        """The strong-convexity constant that the condition number implies: L_f / kappa."""
        return 1.0 / (self.kappa * self.lr)

    def constants(self) -> dict[str, float]:
        """The parameters of ADOM+'s convergence theorem (Kovalev, Gasanov, Gasnikov, Richtarik 2021)."""
        smooth, mu, chi = 1.0 / self.lr, self.mu, self.chi
        tau2 = min(1.0, (mu / smooth) ** 0.5)
        sigma2 = tau2 / (16.0 * chi)
        nu = mu / 2.0
        return {
            "tau1": 1.0 / (1.0 / tau2 + 0.5), "tau2": tau2, "eta": 1.0 / (smooth * tau2), "alpha": mu / 2.0,
            "nu": nu, "beta": 1.0 / (2.0 * smooth), "sigma1": 1.0 / (1.0 / sigma2 + 0.5), "sigma2": sigma2,
            "theta": nu / (4.0 * sigma2), "gamma": nu / (14.0 * sigma2 * chi ** 2),
            "delta": 1.0 / (17.0 * smooth), "zeta": 0.5,
        }

    def messages(self, dim: int) -> tuple[Message, ...]:
        return (Message((dense("model_sum", dim), dense("dual", dim))),)

    def init(self, x: torch.Tensor, seed: int = 0, model: object = None) -> AdomState:
        zeros = torch.zeros_like(x)
        return AdomState(x.clone(), zeros, zeros, zeros, zeros, zeros)

    def step(self, x: torch.Tensor, state: AdomState, grad_fn: GradFn,
             links: Links) -> tuple[torch.Tensor, AdomState]:
        c = self.constants()
        eta, alpha, nu, theta, beta = c["eta"], c["alpha"], c["nu"], c["theta"], c["beta"]
        x_f, y, y_f, z, z_f, m = state
        # The lines below are the update above with every affine combination fused into lerp / add(alpha=)
        # / addmm: ADOM+ touches six (N, d) vectors per round and is bound by memory passes, not products.
        x_g = torch.lerp(x_f, x, c["tau1"])
        y_g = torch.lerp(y_f, y, c["sigma1"])
        z_g = torch.lerp(z_f, z, c["sigma1"])
        grad = grad_fn(x_g)
        dual = y_g + z_g
        # Lines x+ and y+ are one linear system per coordinate: eliminate x+ from y+'s equation.
        damp = 1.0 / (1.0 + eta * alpha)
        y_new = torch.add(y, grad, alpha=theta * beta + eta * theta * damp)
        y_new.add_(x_g, alpha=-theta * (beta * nu + eta * (nu + alpha) * damp))
        y_new.add_(x, alpha=-theta * damp).add_(dual, alpha=-theta / nu)
        y_new.mul_((1.0 + eta * alpha) / ((1.0 + theta * beta) * (1.0 + eta * alpha) + theta * eta))
        # x+ = damp (x + eta alpha x_g - eta (grad - nu x_g - y+)), expanded.
        x_new = torch.mul(x, damp).add_(x_g, alpha=damp * eta * (alpha + nu))
        x_new.add_(grad, alpha=-damp * eta).add_(y_new, alpha=damp * eta)
        mask = links.exchange()
        laplacian = (normalized_laplacian(mask, x.dtype) if self.gossip == "laplacian"
                     else gossip_laplacian(mask, x.dtype))
        sent = torch.add(m, dual, alpha=c["gamma"] / nu)
        mixed = laplacian @ sent  # L(k) is symmetric: receiver j combines what it heard
        z_new = torch.lerp(z, z_g, c["gamma"] * c["delta"]).sub_(mixed)
        m_new = sent.sub_(mixed)
        x_f_new = torch.add(x_g, x_new, alpha=c["tau2"]).sub_(x, alpha=c["tau2"])
        y_f_new = torch.add(y_g, y_new, alpha=c["sigma2"]).sub_(y, alpha=c["sigma2"])
        z_f_new = torch.addmm(z_g, laplacian, dual, alpha=-c["zeta"])
        return x_new, AdomState(x_f_new, y_new, y_f_new, z_new, z_f_new, m_new)
