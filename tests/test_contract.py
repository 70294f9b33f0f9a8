"""Contract tests every registered algorithm must pass.

Gradients come from a fixed per-device quadratic, f_i(x) = 0.5 ||x - c_i||^2 * a_i,
so they are exact and the same for every call: differences between runs can
only come from the algorithm and the masks it was given.
"""

import pytest
import torch

from learner.algorithms.base import DeclaredLinks, payload_bytes
from learner.algorithms.registry import ASYNCHRONOUS, SYNCHRONOUS, algorithm_class, build_algorithm, kind_of, names_of_kind
from learner.compress import encoded_bytes
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

    def exchange(self, payload_bytes=None, senders=None, kept=None):
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
    """``rounds`` steps over the algorithm's declared messages (``DeclaredLinks``, as the runner gives them);
    the bytes each exchange put on the air, per round."""
    state = algorithm.init(x, seed=seed, model=MODEL)
    payloads = []
    for _ in range(rounds):
        links = links_for(algorithm, mask)
        x, state = algorithm.step(x, state, grad_fn, DeclaredLinks(links, algorithm.messages(x.shape[1]), x.shape[0]))
        payloads.append(links.payloads)
    return x, payloads


def _random_mask(seed, n=N, p=0.6):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=generator) < p
    mask.fill_diagonal_(False)
    return mask


def pytest_generate_tests(metafunc):
    """Every registered algorithm, or only those named with ``--algorithm`` (a plugin's ``module:Class``)."""
    chosen = metafunc.config.getoption("algorithm")
    for fixture, kind in (("algorithm", SYNCHRONOUS), ("async_algorithm", ASYNCHRONOUS)):
        if fixture in metafunc.fixturenames:
            names = [name for name in chosen if kind_of(algorithm_class(name)) == kind] if chosen else \
                names_of_kind(kind)
            metafunc.parametrize(f"{fixture}_name", names)


@pytest.fixture
def algorithm(algorithm_name):
    return build_algorithm(algorithm_name)


@pytest.fixture
def async_algorithm(async_algorithm_name):
    return build_algorithm(async_algorithm_name)


def test_shapes_finiteness_and_declared_payloads(algorithm):
    x, centres, scales = _problem()
    out, payloads = _run(algorithm, x, quadratic(scales, centres), _random_mask(1))
    assert out.shape == (N, D) and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    messages = algorithm.messages(D)
    declared = list(payload_bytes(messages))
    per_sender = any(message.per_sender for message in messages)
    if is_server(algorithm):  # uploads from the N devices, then a download from the server (node N)
        for used in payloads:
            up, down = used
            assert len(up) == N + 1 and up[N] == 0 and all(0 <= b <= declared[0] for b in up[:N])
            assert down == [0] * N + [declared[1]]
            if not per_sender:
                assert up[:N] == [declared[0]] * N
        return
    for used in payloads:  # every exchange carries a declared payload, in order
        if per_sender:
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


def test_the_bytes_on_the_air_are_the_declared_fields(algorithm):
    """What a step puts on the air, exchange by exchange, equals its declared fields: 4 bytes per float32 of a
    dense field, the sparse encoding (learner/compress.py) of a sparse one; never a size written elsewhere."""
    x, centres, scales = _problem()
    messages = algorithm.messages(D)
    _, payloads = _run(algorithm, x, quadratic(scales, centres), torch.ones(N, N, dtype=torch.bool), rounds=1)
    assert 0 < len(payloads[0]) <= len(messages)
    for sent, message in zip(payloads[0], messages):
        declared = sum(4 * f.width if f.kept is None else encoded_bytes(f.kept, f.width) for f in message.fields)
        sizes = [sent] * N if isinstance(sent, int) else list(sent)
        if message.to == "server":
            sizes = sizes[:N]
        elif message.to == "devices":
            sizes = sizes[N:]
        assert all(0 <= size <= declared for size in sizes) if message.per_sender else set(sizes) == {declared}


def test_an_asynchronous_message_is_its_declared_fields(async_algorithm):
    algorithm = async_algorithm
    (message,) = algorithm.messages(D)
    x = torch.randn(N, D)
    sent = algorithm.message(x, algorithm.init(x, seed=0))
    assert sent.shape == (N, sum(field.width for field in message.fields)) and message.fields[0].width == D
    assert message.nbytes == 4 * sent.shape[1]  # dense float32 columns, nothing else on the air
    torch.testing.assert_close(sent[:, :D], x)  # the model first
