"""Byzantine devices: who they are, and what their messages carry (message attacks) or what they learn from
(training attacks: sign flip, label flipping).

A Byzantine device sends on the air like any device: the same message, the same size, on the same schedule;
only the values it carries are forged, or what it learns from is. What it may know, stated once for every attack here: **the messages
of the round that it received** (on a broadcast medium an attacker hears its neighbours' broadcasts of the
round before it sends: omniscient within radio range, not beyond), its own model, the number of devices and
of Byzantine devices. An attacker that heard no honest message this round sends its own model unchanged (it
has nothing to forge from). Honest devices never know who is Byzantine.

Each message attack is a pure function ``attack(x, mask, byzantine, strength, generator) -> sent``: ``x`` (N, d) what
every device would send honestly, ``mask[i, j]`` j received i's message this round, ``byzantine`` (N,) bool;
``sent`` equals ``x`` on the honest rows. ``strength`` 0 means the attack's published default.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from scipy.stats import norm

from learner.devices import Devices

Attack = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Generator], torch.Tensor]
PLACEMENTS = ("random", "degree")


def heard_honest(mask: torch.Tensor, byzantine: torch.Tensor) -> torch.Tensor:
    """(N, N) bool: heard[i, b] = b received honest device i's message this round (i != b)."""
    n = mask.shape[0]
    return mask[:n, :n] & ~byzantine[:, None] & ~torch.eye(n, dtype=torch.bool)


def forged(x: torch.Tensor, byzantine: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x`` with the Byzantine rows replaced by ``rows`` (N, d)."""
    return torch.where(byzantine[:, None], rows, x)


def honest_moments(x: torch.Tensor, mask: torch.Tensor, byzantine: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per device b: the coordinate-wise mean and standard deviation (ddof 0) of the honest messages b heard,
    and how many it heard (mean and std 0 where none)."""
    heard = heard_honest(mask, byzantine).to(x.dtype)  # (i, b)
    count = heard.sum(0)
    share = heard / count.clamp(min=1)[None, :]
    mean = share.T @ x
    spread = (share.T @ x.pow(2) - mean.pow(2)).clamp(min=0).sqrt()
    return mean, spread, count


def negation(x, mask, byzantine, strength, generator):
    """Model negation: the attacker sends its model negated and scaled, -s x_b (s = ``strength``, default 1).
    Knows only its own model. Harsher than the sign flip below: on a coordinate whose honest values straddle
    0 the negated value lies among them, so coordinate-wise rules keep it."""
    return forged(x, byzantine, -(strength or 1.0) * x)


def gaussian(x, mask, byzantine, strength, generator):
    """Gaussian noise (Blanchard, El Mhamdi, Guerraoui & Stainer, NeurIPS 2017's "Gaussian Byzantine"
    workers): the attacker sends a vector drawn from N(0, s^2 I) (s = ``strength``, default 1), drawn from
    the run's attack generator. Knows nothing."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * (strength or 1.0)
    return forged(x, byzantine, noise)


def alie_z(devices: int, byzantine: int) -> float:
    """ALIE's z_max (Baruch, Baruch & Goldberg, NeurIPS 2019, Sec. 3): s = floor(n / 2 + 1) - f supporters are
    needed, and z = Phi^-1((n - s) / n)."""
    supporters = math.floor(devices / 2 + 1) - byzantine
    return float(norm.ppf((devices - supporters) / devices))


def alie(x, mask, byzantine, strength, generator):
    """A Little Is Enough (Baruch, Baruch & Goldberg, NeurIPS 2019): each coordinate of the honest messages'
    mean moved by z standard deviations, mu - z sigma: small enough to pass median- and trimming-based rules,
    consistent enough to bias them. Read for decentralized learning: mu and sigma over the honest messages the
    attacker heard this round; z = ``strength``, default the paper's z_max for n devices and f attackers
    (``alie_z``)."""
    mean, spread, count = honest_moments(x, mask, byzantine)
    z = strength or alie_z(x.shape[0], int(byzantine.sum()))
    return forged(x, byzantine, torch.where(count[:, None] > 0, mean - z * spread, x))


def ipm(x, mask, byzantine, strength, generator):
    """Inner-product manipulation (Xie, Koyejo & Gupta, UAI 2020): send -eps times the honest mean, so the
    aggregate's inner product with the true direction turns negative. Read for models: -eps x the mean of the
    honest models the attacker heard this round; eps = ``strength``, default 0.1 (the paper's small-eps
    setting)."""
    mean, _, count = honest_moments(x, mask, byzantine)
    return forged(x, byzantine, torch.where(count[:, None] > 0, -(strength or 0.1) * mean, x))


def dissensus_targets(mask: torch.Tensor, byzantine: torch.Tensor) -> torch.Tensor:
    """(N,) per attacker b: the honest device it heard this round whose index follows b's, cyclically (N: none),
    so the attackers' targets spread over the honest devices and stay put while their links do."""
    n = mask.shape[0]
    distance = (torch.arange(n)[:, None] - torch.arange(n)[None, :]) % n  # (i, b): i's place after b
    ranked = torch.where(heard_honest(mask, byzantine), distance, n)
    return torch.where(ranked.min(0).values < n, ranked.argmin(0), n)


def dissensus(x, mask, byzantine, strength, generator):
    """Dissensus (He, Karimireddy & Jaggi, "Byzantine-robust decentralized learning via ClippedGossip", 2022):
    an attacker keeps an honest target from agreeing with its honest neighbours by sending
    x_t - eps sum_k W_tk (x_k - x_t) / sum_b W_tb. Read for our attackers' knowledge and equal weights:
    x_t - eps (h / f) (mu - x_t), mu the mean of the h honest messages the attacker heard (its estimate of the
    target's neighbourhood), f the number of attackers; with all f among the target's neighbours their
    messages cancel eps times the honest pull on it (eps = ``strength``, default 1: exactly). Read for
    broadcast: the paper's attacker may send each neighbour its own value; on the air one value reaches all, so
    each attacker has one target a round (``dissensus_targets``, as each of the paper's attackers has one
    neighbour to attack) and its other receivers get the same value."""
    mean, _, count = honest_moments(x, mask, byzantine)
    targets = dissensus_targets(mask, byzantine)
    target = x[targets.clamp(max=x.shape[0] - 1)]
    scale = (strength or 1.0) * count.to(x.dtype) / max(int(byzantine.sum()), 1)
    return forged(x, byzantine, torch.where(count[:, None] > 0, target - scale[:, None] * (mean - target), x))


MESSAGE_ATTACKS: dict[str, Attack] = {"negation": negation, "gaussian": gaussian, "alie": alie, "ipm": ipm,
                                      "dissensus": dissensus}
TRAINING_ATTACKS = ("sign_flip", "label_flip")  # they poison what the attacker learns from; it then sends honestly
ATTACKS = (*TRAINING_ATTACKS, *MESSAGE_ATTACKS)


class SignFlippingDevices(Devices):
    """Sign flip, or bit flipping (Allen-Zhu, Ebrahimian, Li & Alistarh, ICLR 2021; the "BF" attack of He,
    Karimireddy & Jaggi 2022 and Karimireddy, He & Jaggi, ICLR 2022): a Byzantine device's stochastic gradient
    is negated and scaled, -s g_b (s = ``strength``, default 1), and it runs the algorithm on it: it ascends
    its loss and sends what it then holds, so its messages look like any device's. Knows only its own data."""

    def __init__(self, *args, byzantine: torch.Tensor, strength: float):
        super().__init__(*args)
        self._factor = torch.where(byzantine, -(strength or 1.0), 1.0)

    def gradients(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad, loss = super().gradients(params)
        return grad * self._factor[:, None].to(grad.dtype), loss

    def keyed_gradients(self, params: torch.Tensor, counts: np.ndarray,
                        devices: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        grad, loss = super().keyed_gradients(params, counts, devices)
        factor = self._factor if devices is None else self._factor[torch.as_tensor(np.asarray(devices))]
        return grad * factor[:, None].to(grad.dtype), loss


def flip_labels(labels: np.ndarray, classes: int) -> np.ndarray:
    """Label flipping (Biggio, Nelson & Laskov, ICML 2012; the data-poisoning baseline of Fang et al., USENIX
    Security 2020): class c becomes C - 1 - c on the attacker's own shard; it then trains and sends honestly."""
    return (classes - 1 - labels).astype(labels.dtype)


def byzantine_devices(devices: int, fraction: float, listed: tuple[int, ...], placement: str, seed: int,
                      idle_degree: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: the listed devices, or round(fraction x N) of them, placed at random from the seed or on the
    highest degrees of the quiet channel's graph (``idle_degree``; ties to the lower index)."""
    chosen = np.zeros(devices, dtype=bool)
    if listed:
        chosen[list(listed)] = True
        return chosen
    count = int(round(fraction * devices))
    if count == 0:
        return chosen
    if placement == "degree":
        if idle_degree is None:
            raise ValueError("byzantine.placement: \"degree\" needs a placed link model (ns3, random_graph's "
                             "positions are not drawn); use \"random\"")
        chosen[np.argsort(-np.asarray(idle_degree), kind="stable")[:count]] = True
        return chosen
    chosen[np.random.default_rng([seed, 0xB42]).choice(devices, size=count, replace=False)] = True
    return chosen
