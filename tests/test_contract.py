"""Contract tests every registered algorithm must pass.

Gradients come from a fixed per-device quadratic, f_i(x) = 0.5 ||x - c_i||^2 * a_i,
so they are exact and the same for every call: differences between runs can
only come from the algorithm and the masks it was given.
"""

import pytest
import torch

from learner.algorithms import REGISTRY, build_algorithm
from learner.models import build_model
from learner.server import access_point_mask, is_server

N = 6
MODEL = build_model("mlp", num_features=5, num_classes=3, hidden=4)  # gives algorithms a layer split
D = MODEL.dim
ROUNDS = 3


class MaskLinks:
    """Hands out the same fixed mask for every exchange (unit tests only)."""

    def __init__(self, mask):
        self.mask = mask
        self.payloads = []

    def exchange(self, payload_bytes):
        self.payloads.append(payload_bytes)
        return self.mask.clone()


def quadratic(scales, centres):
    def grad_fn(x):
        return scales[:, None] * (x - centres)

    return grad_fn


def _problem(seed=0, n=N):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=generator) * 0.1
    centres = torch.randn(n, D, generator=generator)
    scales = 0.5 + torch.rand(n, generator=generator)
    return x, centres, scales


def links_for(algorithm, mask):
    return MaskLinks(access_point_mask(mask) if is_server(algorithm) else mask)


def _run(algorithm, x, grad_fn, mask, rounds=ROUNDS, seed=0):
    state = algorithm.init(x, seed=seed, model=MODEL)
    payloads = []
    for _ in range(rounds):
        links = links_for(algorithm, mask)
        x, state = algorithm.step(x, state, grad_fn, links)
        payloads.append(links.payloads)
    return x, payloads


def _random_mask(seed, n=N, p=0.6):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=generator) < p
    mask.fill_diagonal_(False)
    return mask


def pytest_generate_tests(metafunc):
    """Every registered algorithm, or only those named with ``--algorithm`` (a plugin's ``module:Class``)."""
    if "algorithm" in metafunc.fixturenames:
        metafunc.parametrize("algorithm_name", metafunc.config.getoption("algorithm") or sorted(REGISTRY))


@pytest.fixture
def algorithm(algorithm_name):
    return build_algorithm(algorithm_name)


def test_shapes_finiteness_and_declared_payloads(algorithm):
    x, centres, scales = _problem()
    out, payloads = _run(algorithm, x, quadratic(scales, centres), _random_mask(1))
    assert out.shape == (N, D) and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    declared = list(algorithm.exchange_payloads(D))
    if is_server(algorithm):  # uploads from the N devices, then a download from the server (node N)
        for used in payloads:
            up, down = used
            assert len(up) == N + 1 and up[N] == 0 and all(0 <= b <= declared[0] for b in up[:N])
            assert down == [0] * N + [declared[1]]
            if not getattr(algorithm, "variable_payload", False):
                assert up[:N] == [declared[0]] * N
        return
    for used in payloads:  # every exchange carries a declared payload, in order
        if getattr(algorithm, "variable_payload", False):
            # Per-sender sizes that follow the selection (online mode only): N ints within the declared bound.
            assert all(len(sizes) == N and all(1 <= int(b) <= bound for b in sizes)
                       for sizes, bound in zip(used, declared, strict=False)) and len(used) <= len(declared)
        else:
            assert used == declared[:len(used)]


def test_all_false_mask_means_no_neighbour_influence(algorithm):
    x, centres, scales = _problem()
    mask = torch.zeros(N, N, dtype=torch.bool)
    together, _ = _run(algorithm, x, quadratic(scales, centres), mask)
    # The same devices, each run alone: the batched step must equal this per-device loop.
    for i in range(N):
        alone, _ = _run(algorithm, x[i:i + 1], quadratic(scales[i:i + 1], centres[i:i + 1]),
                        torch.zeros(1, 1, dtype=torch.bool))
        assert torch.allclose(together[i], alone[0], atol=1e-5), f"device {i} was influenced with no links"


def test_perturbing_an_undelivered_neighbour_changes_nothing(algorithm):
    x, centres, scales = _problem()
    mask = _random_mask(2)
    silent = 4
    mask[silent, :] = False  # nobody ever receives device 4
    base, _ = _run(algorithm, x, quadratic(scales, centres), mask)
    moved_x = x.clone()
    moved_x[silent] += 10.0
    moved_centres = centres.clone()
    moved_centres[silent] -= 5.0
    moved, _ = _run(algorithm, moved_x, quadratic(scales, moved_centres), mask)
    others = [i for i in range(N) if i != silent]
    assert torch.allclose(base[others], moved[others], atol=1e-5)


def test_the_same_seed_gives_the_same_step(algorithm):
    x, centres, scales = _problem()
    first, _ = _run(algorithm, x, quadratic(scales, centres), _random_mask(3), seed=5)
    second, _ = _run(algorithm, x, quadratic(scales, centres), _random_mask(3), seed=5)
    assert torch.equal(first, second)


def test_step_is_pure_in_x_state_and_gradient(algorithm):
    # Two steps from the same (x, state) give the same result, and no input is modified, not even the
    # gradient handed back (float64 inputs catch a .double() that returns its input, then changed in place):
    # everything that carries over lives in the returned state (a generator advanced in place would fail this).
    for dtype in (torch.float32, torch.float64):
        x, centres, scales = (t.to(dtype) for t in _problem())
        state = algorithm.init(x, seed=1, model=MODEL)
        x_before = x.clone()
        handed = []

        def grad_fn(point):
            gradient = quadratic(scales, centres)(point)
            handed.append((gradient, gradient.clone()))
            return gradient

        first, _ = algorithm.step(x, state, grad_fn, links_for(algorithm, _random_mask(5)))
        second, _ = algorithm.step(x, state, grad_fn, links_for(algorithm, _random_mask(5)))
        assert torch.equal(x, x_before), dtype
        assert torch.equal(first, second), dtype
        assert handed and all(torch.equal(gradient, before) for gradient, before in handed), dtype


def test_non_finite_parameters_do_not_raise(algorithm):
    # The runner reports a run whose parameters stop being finite as diverged; the step itself must not crash.
    x, centres, scales = _problem()
    x[1, 2] = float("inf")
    x[3, 0] = float("nan")
    out, _ = _run(algorithm, x, quadratic(scales, centres), _random_mask(6), rounds=2)
    assert out.shape == (N, D)
