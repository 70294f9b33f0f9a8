"""DSGT, DeTAG, D^2, SGP and DeFacto: per-device loops, exactness on heterogeneous quadratics, push-sum bias.

The quadratic f_i(x) = a_i / 2 ||x - c_i||^2 gives exact gradients and a
known global optimum x* = sum a_i c_i / sum a_i that no device's own optimum
equals, so "reaches x*" separates gradient tracking from plain gossip SGD.
"""

import math

import numpy as np
import pytest
import torch

from learner.algorithms.base import DeclaredLinks, payload_bytes
from learner.algorithms.registry import build_algorithm
from learner.algorithms.detag import default_gossip_steps
from learner.mixing import receiver_mean
from masks import mask_from_edges as _mask

N, D = 6, 4


class ListLinks:
    """Hands out the given masks in order, recording payloads (unit tests only)."""

    def __init__(self, masks):
        self.masks = list(masks)
        self.payloads = []

    def exchange(self, payload_bytes=None, senders=None, kept=None):
        mask = self.masks[len(self.payloads) % len(self.masks)]
        self.payloads.append(payload_bytes)
        return mask.clone()


class Quadratic:
    def __init__(self, n=N, d=D, seed=0, dtype=torch.float32):
        generator = torch.Generator().manual_seed(seed)
        self.centres = torch.randn(n, d, generator=generator, dtype=torch.float64).to(dtype)
        self.scales = (0.5 + torch.rand(n, generator=generator, dtype=torch.float64)).to(dtype)
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return self.scales[:, None] * (x - self.centres)

    def grad_of(self, i, v):  # one device's gradient, for the per-device loops
        return self.scales[i] * (v - self.centres[i])

    @property
    def optimum(self):
        return (self.scales[:, None] * self.centres).sum(0) / self.scales.sum()


CONNECTED = _mask(N, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3)])


def _run(name, problem, schedule, x=None, **hyper):
    """Run ``name`` from x (zeros by default); schedule[t] lists the masks of round t's exchanges."""
    algorithm = build_algorithm(name, **hyper)
    x = torch.zeros_like(problem.centres) if x is None else x
    state = algorithm.init(x, seed=0)
    for masks in schedule:
        x, state = algorithm.step(x, state, problem, ListLinks(masks))
    return x, state


def _case(seed, p=0.5, count=3):
    """A heterogeneous quadratic, ``count`` random masks and a random start, all from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    masks = [torch.rand(N, N, generator=generator) < p for _ in range(count)]
    return Quadratic(seed=seed), masks, torch.randn(N, D, generator=generator)


# ---- per-device reference loops: one device at a time, weights written out by hand -------------------

def _mh(mask, i, j):
    """Metropolis-Hastings weight of i's value at j over two-way links, from the definition."""
    n = mask.shape[0]
    two_way = [[bool(mask[a, b] and mask[b, a]) and a != b for b in range(n)] for a in range(n)]
    degree = [sum(row) for row in two_way]
    if i != j:
        return 1.0 / (1 + max(degree[i], degree[j])) if two_way[i][j] else 0.0
    return 1.0 - sum(_mh(mask, k, j) for k in range(n) if k != j)


def _gossip(values, mask, j):
    return sum(_mh(mask, i, j) * values[i] for i in range(len(values)))


def test_dsgt_equals_a_per_device_loop_over_changing_masks():
    problem, masks, x0 = _case(1)
    x, _ = _run("dsgt", problem, [[mask] for mask in masks], x0, lr=0.2)

    xs, mixed_y, last_g = list(x0), [torch.zeros(D)] * N, [torch.zeros(D)] * N
    for mask in masks:
        grads = [problem.grad_of(i, xs[i]) for i in range(N)]
        ys = [mixed_y[i] + grads[i] - last_g[i] for i in range(N)]
        xs = [_gossip(xs, mask, j) - 0.2 * ys[j] for j in range(N)]
        mixed_y, last_g = [_gossip(ys, mask, j) for j in range(N)], grads
    assert torch.allclose(x, torch.stack(xs), atol=1e-5)


def test_detag_phase_equals_a_per_device_loop():
    problem, masks, x0 = _case(2, p=0.7)  # one mask per gossip step of a phase
    x, _ = _run("detag", problem, [masks, masks], x0, lr=0.3, gossip_steps=3, gossip_steps_max=3, grad_batches=2)

    first = np.array([[_mh(masks[0], i, j) for j in range(N)] for i in range(N)])
    lam = sorted(np.abs(np.linalg.eigvalsh(first)))[-2]  # these random masks give a connected graph
    eta = (1 - math.sqrt(1 - lam ** 2)) / (1 + math.sqrt(1 - lam ** 2))
    xs, ys, last_g = list(x0), [torch.zeros(D)] * N, [torch.zeros(D)] * N
    for _ in range(2):
        grads = [problem.grad_of(i, xs[i]) for i in range(N)]  # the mean of 2 identical exact gradients
        previous, current = [torch.cat([xs[i], ys[i]]) for i in range(N)], [torch.cat([xs[i], ys[i]]) for i in range(N)]
        for mask in masks:
            step = [(1 + eta) * _gossip(current, mask, j) - eta * previous[j] for j in range(N)]
            previous, current = current, step
        xs = [current[j][:D] - 0.3 * current[j][D:] for j in range(N)]
        ys = [current[j][D:] + grads[j] - last_g[j] for j in range(N)]
        last_g = grads
    assert torch.allclose(x, torch.stack(xs), atol=1e-5)
    assert problem.calls == 4  # B = 2 mini-batches per phase, two phases


def test_d2_equals_a_per_device_loop_over_changing_masks():
    problem, masks, x0 = _case(3)
    x, _ = _run("d2", problem, [[mask] for mask in masks], x0, lr=0.2)

    xs, last_x, last_g = list(x0), list(x0), [torch.zeros(D)] * N
    for mask in masks:
        grads = [problem.grad_of(i, xs[i]) for i in range(N)]
        half = [2 * xs[i] - last_x[i] - 0.2 * grads[i] + 0.2 * last_g[i] for i in range(N)]
        last_x, last_g = xs, grads
        xs = [0.5 * half[j] + 0.5 * _gossip(half, mask, j) for j in range(N)]
    assert torch.allclose(x, torch.stack(xs), atol=1e-5)


def test_sgp_equals_a_per_device_push_sum_loop_on_directed_masks():
    problem, masks, x0 = _case(4, p=0.4)
    x, state = _run("sgp", problem, [[mask] for mask in masks], x0, lr=0.2)

    zs, ws = list(x0), [1.0] * N
    for mask in masks:
        numerators = [ws[i] * zs[i] - 0.2 * problem.grad_of(i, zs[i]) for i in range(N)]
        receivers = [[j for j in range(N) if j != i and mask[i, j]] for i in range(N)]
        new_u, new_w = [torch.zeros(D) for _ in range(N)], [0.0] * N
        for i in range(N):  # sender i pushes equal shares to itself and to whoever received it
            for j in [i, *receivers[i]]:
                new_u[j] = new_u[j] + numerators[i] / (1 + len(receivers[i]))
                new_w[j] += ws[i] / (1 + len(receivers[i]))
        zs, ws = [new_u[j] / new_w[j] for j in range(N)], new_w
    assert torch.allclose(x, torch.stack(zs), atol=1e-5)
    assert torch.allclose(state[:, 0], torch.tensor(ws), atol=1e-6)


def test_defacto_phase_equals_a_per_device_loop():
    problem, masks, x0 = _case(5)
    x, _ = _run("defacto", problem, [masks], x0, lr=0.2, gossip_steps=3)
    zs = [x0[i] - 0.2 * problem.grad_of(i, x0[i]) for i in range(N)]
    for mask in masks:
        zs = [_gossip(zs, mask, j) for j in range(N)]
    assert torch.allclose(x, torch.stack(zs), atol=1e-5)
    assert problem.calls == 3  # B defaults to R


# ---- what the methods are for -------------------------------------------------------------------------

@pytest.mark.parametrize("name, dtype", [("dsgt", torch.float32), ("detag", torch.float32), ("d2", torch.float64)])
def test_tracking_methods_reach_the_global_optimum_on_a_static_connected_mask(name, dtype):
    # D^2 in float64: its 2 x_t - x_{t-1} recursion integrates float32 rounding (~1e-7 per round).
    problem = Quadratic(seed=6, dtype=dtype)
    x, _ = _run(name, problem, [[CONNECTED]] * 400, lr=0.1)
    optimum = problem.optimum
    assert (x - optimum).abs().max() < 1e-5
    assert min(float((optimum - c).abs().max()) for c in problem.centres) > 0.1  # no device's own optimum


def test_dpsgd_keeps_its_heterogeneity_bias_on_the_same_problem():
    problem = Quadratic(seed=6)
    x, _ = _run("dpsgd", problem, [[CONNECTED]] * 400, lr=0.1)
    later, _ = _run("dpsgd", problem, [[CONNECTED]] * 800, lr=0.1)
    assert (later - x).abs().max() < 1e-5  # it has converged ...
    assert (x - problem.optimum).abs().max() > 1e-2  # ... to a biased point
    smaller, _ = _run("dpsgd", problem, [[CONNECTED]] * 4000, lr=0.01)
    error, smaller_error = (x - problem.optimum).abs().max(), (smaller - problem.optimum).abs().max()
    assert 3 < error / smaller_error < 30  # the bias is O(lr)


def test_detag_reaches_the_optimum_over_a_fixed_ring_in_fewer_rounds_than_dpsgd():
    # DeTAG's sparse-network setting: a fixed ring (spectral gap 2/3 (1 - cos 2π/N)), the same links every
    # exchange, a heterogeneous quadratic. Rounds until every device is within 1e-2 of the global optimum.
    from bridge.controls import graph_adjacency

    ring = torch.from_numpy(graph_adjacency("ring", N))
    problem = Quadratic(seed=11)
    limit = 400

    def rounds_to_optimum(name, **hyper):
        algorithm = build_algorithm(name, **hyper)
        x = torch.zeros_like(problem.centres)
        state = algorithm.init(x, seed=0)
        for round_index in range(1, limit + 1):
            x, state = algorithm.step(x, state, problem, ListLinks([ring] * 4))
            if (x - problem.optimum).norm(dim=1).max() < 1e-2:
                return round_index
        return None

    detag = rounds_to_optimum("detag", lr=0.2)
    dpsgd = rounds_to_optimum("dpsgd", lr=0.2)
    assert detag is not None and (dpsgd is None or detag < dpsgd), (detag, dpsgd)


def test_defacto_approaches_the_optimum_as_its_averaging_gets_exact():
    problem = Quadratic(seed=6)
    errors = [float((_run("defacto", problem, [[CONNECTED]] * 300, lr=0.1, gossip_steps=r)[0]
                     - problem.optimum).abs().max()) for r in (1, 4, 16)]
    assert errors[0] > 3 * errors[1] > 9 * errors[2]
    assert errors[2] < 1e-3


def test_trackers_follow_the_average_gradient_over_lossy_changing_masks():
    problem, masks, _ = _case(7, p=0.3, count=5)
    _, dsgt = _run("dsgt", problem, [[mask] for mask in masks] * 2, lr=0.1)
    assert torch.allclose(dsgt.mixed_tracker.mean(0), dsgt.last_grad.mean(0), atol=1e-5)
    _, detag = _run("detag", problem, [masks] * 7, lr=0.1)
    assert torch.allclose(detag.tracker.mean(0), detag.last_grad.mean(0), atol=1e-5)


def test_sgp_is_unbiased_on_a_directed_mask_where_receiver_mean_sgd_is_not():
    # Directed ring 0->1->...->5->0 plus one-way chords from device 0: strongly connected, unbalanced.
    mask = _mask(N, [(i, (i + 1) % N) for i in range(N)] + [(0, 2), (0, 3), (0, 4)], both_ways=False)
    problem = Quadratic(seed=8, dtype=torch.float64)
    errors = {}
    for lr in (1e-2, 1e-3):
        x, _ = _run("sgp", problem, [[mask]] * int(30 / lr), lr=lr)
        errors[lr] = float((x - problem.optimum).abs().max())
    assert errors[1e-3] < 5e-3
    assert 5 < errors[1e-2] / errors[1e-3] < 20  # what is left is the O(lr) gossip-SGD term, not a bias

    # The same SGD with receiver-mean averaging (device j averages itself and what it received).
    x = torch.zeros(N, D, dtype=torch.float64)
    for _ in range(30_000):
        x = receiver_mean(mask, x) - 1e-3 * problem(x)
    assert (x - problem.optimum).abs().max() > 0.05  # converges to a differently weighted optimum


# ---- DeTAG's schedule ---------------------------------------------------------------------------------

def test_detag_default_gossip_steps_follow_the_spectral_gap():
    assert default_gossip_steps(8, 0.0, 10) == 2  # ceil(0.5 ln 8) = ceil(1.04)
    assert default_gossip_steps(8, 1 / 3 + 2 / 3 * math.cos(math.pi / 4), 10) == 3  # ring of 8: ceil(2.35)
    assert default_gossip_steps(20, 0.99, 6) == 6  # capped
    assert default_gossip_steps(20, 1.0, 6) == 6
    assert default_gossip_steps(1, 0.0, 6) == 1  # at least one step


@pytest.mark.parametrize("mask, cap, steps", [
    (torch.ones(8, 8, dtype=torch.bool), 6, 2),
    (_mask(8, [(i, (i + 1) % 8) for i in range(8)]), 6, 3),
    (_mask(8, [(i, (i + 1) % 8) for i in range(8)]), 2, 2),
])
def test_detag_uses_r_exchanges_and_r_mini_batches_per_phase(mask, cap, steps):
    problem = Quadratic(n=8, seed=9)
    algorithm = build_algorithm("detag", gossip_steps_max=cap)
    links = ListLinks([mask])
    x = torch.zeros(8, D)
    algorithm.step(x, algorithm.init(x), problem, DeclaredLinks(links, algorithm.messages(D), 8))
    assert len(links.payloads) == steps and problem.calls == steps
    assert links.payloads == list(payload_bytes(algorithm.messages(D)))[:steps] == [2 * D * 4] * steps
    assert len(algorithm.messages(D)) == cap


def test_declared_payloads():
    def declared(name, **hyperparameters):
        return payload_bytes(build_algorithm(name, **hyperparameters).messages(10))

    assert declared("dsgt") == (80,) and declared("d2") == (40,) and declared("sgp") == (44,)
    assert declared("defacto", gossip_steps=3) == (40, 40, 40)
    assert declared("detag", gossip_steps=2, gossip_steps_max=5) == (80, 80)


@pytest.mark.parametrize("name, field, value", [
    ("dsgt", "lr", 0.0), ("d2", "lr", -1.0), ("sgp", "lr", 1e9), ("detag", "lr", 0.0),
    ("detag", "gossip_steps_max", 0), ("detag", "gossip_steps", 5), ("detag", "grad_batches", 1.5),
    ("defacto", "gossip_steps", 0), ("defacto", "grad_batches", -1), ("detag", "gossip_steps_max", True),
])
def test_bad_hyperparameters_name_the_field(name, field, value):
    with pytest.raises(ValueError, match=f"^{field}: "):
        build_algorithm(name, **{field: value})
