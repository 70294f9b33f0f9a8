"""HyperPrism and its baselines against hand-written per-device updates, invariants and exact optima.

Quadratic objectives f_i(x) = a_i / 2 ||x - c_i||^2 give exact gradients, so the
minimiser of sum_i f_i is known: x* = sum_i a_i c_i / sum_i a_i.
"""

import pytest
import torch

from learner.algorithms.base import DeclaredLinks, payload_bytes
from learner.algorithms.registry import build_algorithm
from learner.algorithms.hyperprism import _exponents
from learner.mixing import metropolis_hastings, random_matching, symmetric_links
from learner.models import build_model

N, D = 6, 9


class MaskLinks:
    def __init__(self, masks):
        self.masks = list(masks)
        self.payloads = []

    def exchange(self, payload_bytes=None, senders=None, kept=None):
        self.payloads.append(payload_bytes)
        return self.masks[(len(self.payloads) - 1) % len(self.masks)].clone()


def _problem(seed=0, n=N, d=D, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, d, generator=generator) * 0.5).to(dtype)
    centres = torch.randn(n, d, generator=generator).to(dtype)
    scales = (0.5 + torch.rand(n, generator=generator)).to(dtype)
    return x, centres, scales


def _grad_fn(scales, centres):
    return lambda x: scales[:, None] * (x - centres)


def _optimum(scales, centres):
    return (scales[:, None] * centres).sum(0) / scales.sum()


def _mask(seed, n=N, p=0.6):
    mask = torch.rand(n, n, generator=torch.Generator().manual_seed(seed)) < p
    mask.fill_diagonal_(False)
    return mask


def _rounds(algorithm, x, grad_fn, masks, rounds, seed=0, model=None):
    state = algorithm.init(x, seed=seed, model=model)
    for r in range(rounds):
        x, state = algorithm.step(x, state, grad_fn, MaskLinks([masks[(r + k) % len(masks)] for k in range(8)]))
    return x, state


# --- HyperPrism -------------------------------------------------------------------------------------------


def _atc_dpsgd(x, grad_fn, masks, rounds, lr):
    """D-PSGD in adapt-then-combine form, x <- W^T (x - lr g), written out (HyperPrism's Algorithm 1 at p = 1)."""
    for r in range(rounds):
        mask = masks[r % len(masks)]
        x = metropolis_hastings(mask).T @ (x - lr * grad_fn(x))
    return x


@pytest.mark.parametrize("name, extra", [("hyperprism-fixed", {"p": 1.0}), ("hyperprism", {"p_max": 1})])
def test_hyperprism_with_p_one_equals_dpsgd_in_adapt_then_combine_form(name, extra):
    x, centres, scales = _problem()
    masks = [_mask(s) for s in range(5)]
    model = build_model("mlp", 2, 3, hidden=1)  # d = 9: 3 representation and 6 decision coordinates
    ours, _ = _rounds(build_algorithm(name, lr=0.05, **extra), x, _grad_fn(scales, centres), masks, 5, model=model)
    # _rounds hands round r the masks r, r+1, ...: HyperPrism uses the first of them.
    reference = _atc_dpsgd(x, _grad_fn(scales, centres), masks, 5, 0.05)
    assert torch.allclose(ours, reference, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name, extra", [("hyperprism-fixed", {"p": 1.0}), ("hyperprism", {"p_max": 1})])
def test_the_receiver_variant_with_p_one_equals_dpsgd(name, extra):
    x, centres, scales = _problem()
    masks = [_mask(s) for s in range(5)]
    model = build_model("mlp", 2, 3, hidden=1)
    algorithm = build_algorithm(name, lr=0.05, variant="receiver", **extra)
    ours, _ = _rounds(algorithm, x, _grad_fn(scales, centres), masks, 5, model=model)
    reference, _ = _rounds(build_algorithm("dpsgd", lr=0.05), x, _grad_fn(scales, centres), masks, 5)
    assert torch.allclose(ours, reference, atol=1e-6, rtol=0)


def _phi(value, p):
    return (1 if value >= 0 else -1) * abs(value) ** p


def _weights_by_hand(mask):
    """a_ij = min(1/(N_i+1), 1/(N_j+1)) on two-way links, a_jj = 1 - the rest: HyperPrism's weights."""
    two_way = [[bool(mask[i, j] and mask[j, i]) and i != j for j in range(N)] for i in range(N)]
    degree = [sum(row) for row in two_way]
    a = [[min(1 / (degree[i] + 1), 1 / (degree[j] + 1)) if two_way[i][j] else 0.0 for j in range(N)]
         for i in range(N)]
    for j in range(N):
        a[j][j] = 1.0 - sum(a[i][j] for i in range(N) if i != j)
    return a


@pytest.mark.parametrize("p", [1.0, 3.0, 5.0, 9.0])
def test_hyperprism_fixed_equals_a_per_device_loop_written_from_algorithm_1(p):
    # Local step, map with the sender's own exponent, weighted mean of what was received over a lossy
    # (directed) mask, inverse map: one device and one coordinate at a time, in plain Python floats.
    x, centres, scales = _problem(1, dtype=torch.float64)
    masks = [_mask(3), _mask(4), _mask(5)]
    algorithm = build_algorithm("hyperprism-fixed", lr=0.1, p=p)
    ours, _ = _rounds(algorithm, x, _grad_fn(scales, centres), masks, 3)
    xs = [[float(v) for v in row] for row in x]
    for r in range(3):
        a = _weights_by_hand(masks[r % 3])
        local = [[xs[i][k] - 0.1 * float(scales[i]) * (xs[i][k] - float(centres[i, k])) for k in range(D)]
                 for i in range(N)]
        mapped = [[_phi(v, p) for v in row] for row in local]  # what device i sends
        xs = [[_phi(sum(a[i][j] * mapped[i][k] for i in range(N)), 1 / p) for k in range(D)] for j in range(N)]
    assert torch.allclose(ours, torch.tensor(xs, dtype=torch.float64), rtol=0, atol=1e-6)


def test_hyperprism_eq6_variant_equals_a_per_device_loop_with_the_step_in_the_mirror_space():
    x, centres, scales = _problem(2, dtype=torch.float64)
    mask = _mask(6)
    new, _ = build_algorithm("hyperprism-fixed", lr=0.1, p=3.0, variant="eq6").step(
        x, None, _grad_fn(scales, centres), MaskLinks([mask]))
    a = _weights_by_hand(mask)
    grad = _grad_fn(scales, centres)(x)
    for j in range(N):
        for k in range(D):
            u = sum(a[i][j] * _phi(float(x[i, k]), 3.0) for i in range(N)) - 0.1 * float(grad[j, k])
            assert float(new[j, k]) == pytest.approx(_phi(u, 1 / 3.0), rel=1e-9, abs=1e-12)


def test_the_slope_is_the_derivative_along_each_devices_own_exponent():
    from learner.algorithms.hyperprism import hyperprism_round

    x, centres, scales = _problem(3, dtype=torch.float64)
    grad = _grad_fn(scales, centres)(x)
    exponents = 3.0 + torch.rand(N, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for variant in ("algorithm1", "eq6"):
        _, slope = hyperprism_round(x, grad, exponents, MaskLinks([_mask(7)]), 0.1, variant, with_slope=True)
        h = 1e-6
        for device in (0, 3):
            up, down = exponents.clone(), exponents.clone()
            up[device] += h
            down[device] -= h
            plus, _ = hyperprism_round(x, grad, up, MaskLinks([_mask(7)]), 0.1, variant)
            minus, _ = hyperprism_round(x, grad, down, MaskLinks([_mask(7)]), 0.1, variant)
            assert torch.allclose(slope[device], (plus[device] - minus[device]) / (2 * h), rtol=1e-4, atol=1e-7)


def test_hyperprism_exponents_use_the_model_split_and_stay_in_the_candidate_range():
    model = build_model("mlp", 4, 3, hidden=2)
    x = torch.randn(N, model.dim, generator=torch.Generator().manual_seed(0)) * 0.3
    centres = torch.randn(N, model.dim, generator=torch.Generator().manual_seed(1))
    scales = torch.ones(N)
    algorithm = build_algorithm("hyperprism", lr=0.05, p_max=9, hn_lr=1.0)
    state = algorithm.init(x, seed=0, model=model)
    assert torch.equal(state.representation, model.part_mask("representation"))
    masks = [_mask(s) for s in range(4)]
    for r in range(4):
        x, state = algorithm.step(x, state, _grad_fn(scales, centres), MaskLinks([masks[r]]))
        assert ((state.exponents >= 1) & (state.exponents <= 9)).all()
        assert state.slope.shape == x.shape and torch.isfinite(x).all()


def test_logistic_regression_leaves_the_representation_exponent_untrained():
    model = build_model("logreg", 4, 3)
    x, centres, scales = _problem(2, d=model.dim)
    algorithm = build_algorithm("hyperprism", lr=0.05, hn_lr=5.0)
    state = algorithm.init(x, seed=1, model=model)
    assert not state.representation.any()
    masks = [_mask(s) for s in range(3)]
    start = state
    for r in range(3):
        x, state = algorithm.step(x, state, _grad_fn(scales, centres), MaskLinks([masks[r]]))
    # Its head's weights only move through the shared trunk; the decision head moves directly.
    assert torch.equal(state.net[6], start.net[6]) and torch.equal(state.net[7], start.net[7])
    assert not torch.equal(state.net[8], start.net[8])


def test_hypernetwork_step_descends_the_post_aggregation_loss():
    # The update must move each device's exponent against dL/dp = sum_k g_k(t+1) dM_k/dp.
    model = build_model("mlp", 4, 3, hidden=2)
    x = torch.randn(N, model.dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    centres = torch.randn(N, model.dim, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    scales = torch.ones(N, dtype=torch.float64)
    algorithm = build_algorithm("hyperprism", lr=0.05, hn_lr=1e-3)
    grad_fn = _grad_fn(scales, centres)
    state = algorithm.init(x, seed=2, model=model)
    x1, state1 = algorithm.step(x, state, grad_fn, MaskLinks([_mask(7, p=0.9)]))
    x2, state2 = algorithm.step(x1, state1, grad_fn, MaskLinks([_mask(8, p=0.9)]))
    contribution = grad_fn(x1) * state1.slope
    hyper = torch.stack([contribution[:, state1.representation].sum(1),
                         contribution[:, ~state1.representation].sum(1)], dim=1)
    before = state1.exponents
    after = _exponents(state2.net, state2.embedding, algorithm.candidates)
    change = ((after - before) * hyper).sum(1)
    assert (change < 0).all() and not torch.equal(after, before)


def test_hyperprism_stays_finite_with_p_nine_on_large_weights():
    x, centres, scales = _problem(3)
    x = x * 1e4  # |x|^9 ~ 1e36: past float32's range
    new, _ = build_algorithm("hyperprism-fixed", lr=0.01, p=9.0).step(
        x, None, _grad_fn(scales, centres), MaskLinks([_mask(4)]))
    assert torch.isfinite(new).all()


def test_hyperprism_reports_non_finite_inputs_as_non_finite_output_without_raising():
    x, centres, scales = _problem(4)
    x[0, 0] = float("nan")
    algorithm = build_algorithm("hyperprism")
    model = build_model("logreg", 2, 3)
    x = x[:, :model.dim]
    new, _ = algorithm.step(x, algorithm.init(x, model=model), _grad_fn(scales, centres[:, :model.dim]),
                            MaskLinks([torch.ones(N, N, dtype=torch.bool)]))
    assert not torch.isfinite(new).all()


# --- SwarmSGD ---------------------------------------------------------------------------------------------


def test_swarmsgd_equals_local_steps_then_pair_averages():
    x, centres, scales = _problem(5)
    grad_fn = _grad_fn(scales, centres)
    mask = _mask(9)
    algorithm = build_algorithm("swarmsgd", lr=0.1, local_steps=3)
    new, _ = algorithm.step(x, algorithm.init(x, seed=11), grad_fn, MaskLinks([mask]))
    local = x.clone()
    for _ in range(3):
        local = local - 0.1 * grad_fn(local)
    partner = random_matching(symmetric_links(mask), torch.Generator().manual_seed(11))
    assert (partner >= 0).any()
    for i in range(N):
        j = int(partner[i])
        expected = (local[i] + local[j]) / 2 if j >= 0 else local[i]
        assert torch.allclose(new[i], expected, atol=1e-6)


def test_swarmsgd_preserves_the_average_of_the_local_models():
    x, centres, scales = _problem(6)
    algorithm = build_algorithm("swarmsgd", lr=0.1, local_steps=1)
    grad_fn = _grad_fn(scales, centres)
    new, _ = algorithm.step(x, algorithm.init(x), grad_fn, MaskLinks([torch.ones(N, N, dtype=torch.bool)]))
    assert torch.allclose(new.mean(0), (x - 0.1 * grad_fn(x)).mean(0), atol=1e-6)


# --- Mudag ------------------------------------------------------------------------------------------------


def test_mudag_on_a_complete_graph_is_nesterov_on_the_average_objective():
    # Complete graph: W = J/N exactly, lambda_2 = 0, FastMix is exact averaging and s is the mean gradient.
    x, centres, scales = _problem(7, dtype=torch.float64)
    x = x[:1].expand(N, -1).clone()
    grad_fn = _grad_fn(scales, centres)
    algorithm = build_algorithm("mudag", lr=0.2, kappa=10.0, mix_steps=2, gossip="metropolis")
    full = torch.ones(N, N, dtype=torch.bool)
    ours, _ = _rounds(algorithm, x, grad_fn, [full], 6)
    beta = algorithm.momentum
    x_c, y_c = x[0], x[0]
    for _ in range(6):
        x_next = y_c - 0.2 * grad_fn(y_c.expand(N, -1)).mean(0)
        x_c, y_c = x_next, x_next + beta * (x_next - x_c)
    assert torch.allclose(ours, x_c.expand(N, -1), atol=1e-10)


def test_mudag_tracks_the_average_gradient_over_lossy_masks():
    x, centres, scales = _problem(8, dtype=torch.float64)
    grad_fn = _grad_fn(scales, centres)
    algorithm = build_algorithm("mudag", lr=0.1, kappa=50.0, mix_steps=3)
    _, state = _rounds(algorithm, x, grad_fn, [_mask(s, p=0.4) for s in range(6)], 5)
    assert torch.allclose(state.s.mean(0), grad_fn(state.y).mean(0), atol=1e-10)
    assert torch.equal(state.grad_y, grad_fn(state.y))


def test_mudag_converges_to_the_exact_optimum_on_a_connected_graph():
    x, centres, scales = _problem(9, dtype=torch.float64)
    ring = torch.zeros(N, N, dtype=torch.bool)
    for i in range(N):
        ring[i, (i + 1) % N] = ring[(i + 1) % N, i] = True
    out, _ = _rounds(build_algorithm("mudag", lr=0.5, kappa=4.0, mix_steps=3), x, _grad_fn(scales, centres), [ring],
                     150)
    assert torch.allclose(out, _optimum(scales, centres).expand(N, -1), atol=1e-6)


def test_mudag_declares_two_k_exchanges_and_uses_them_all():
    algorithm = build_algorithm("mudag", mix_steps=3)
    assert payload_bytes(algorithm.messages(10)) == (40,) * 6
    x, centres, scales = _problem(10)
    links = MaskLinks([_mask(1)])
    algorithm.step(x, algorithm.init(x), _grad_fn(scales, centres), DeclaredLinks(links, algorithm.messages(D), N))
    assert links.payloads == [D * 4] * 6


# --- ADOM+ ------------------------------------------------------------------------------------------------


def test_adom_x_and_y_solve_their_implicit_equations():
    x, centres, scales = _problem(11, dtype=torch.float64)
    grad_fn = _grad_fn(scales, centres)
    algorithm = build_algorithm("adom", lr=0.5, kappa=1 / 0.15, chi=4.0, gossip="metropolis")
    c = algorithm.constants()
    _, state = _rounds(algorithm, x, grad_fn, [_mask(s) for s in range(3)], 3)
    x_now = _rounds(algorithm, x, grad_fn, [_mask(s) for s in range(3)], 3)[0]
    x_new, new = algorithm.step(x_now, state, grad_fn, MaskLinks([_mask(12)]))
    x_g = c["tau1"] * x_now + (1 - c["tau1"]) * state.x_f
    y_g = c["sigma1"] * state.y + (1 - c["sigma1"]) * state.y_f
    z_g = c["sigma1"] * state.z + (1 - c["sigma1"]) * state.z_f
    g = grad_fn(x_g)
    eta, alpha, nu, theta, beta = c["eta"], c["alpha"], c["nu"], c["theta"], c["beta"]
    x_rhs = x_now + eta * alpha * (x_g - x_new) - eta * (g - nu * x_g - new.y)
    y_rhs = state.y + theta * beta * (g - nu * x_g - new.y) - theta * ((y_g + z_g) / nu + x_new)
    assert torch.allclose(x_new, x_rhs, atol=1e-10) and torch.allclose(new.y, y_rhs, atol=1e-10)


def test_adom_keeps_z_and_m_sums_consistent_with_its_gossip():
    # 1^T L(k) = 0, so sum_i (z + m) changes only through the local gamma*delta and (gamma/nu) terms.
    x, centres, scales = _problem(13, dtype=torch.float64)
    algorithm = build_algorithm("adom", lr=0.5, kappa=1 / 0.15, chi=4.0, gossip="metropolis")
    c = algorithm.constants()
    state = algorithm.init(x)
    x1, s1 = algorithm.step(x, state, _grad_fn(scales, centres), MaskLinks([_mask(14)]))
    x2, s2 = algorithm.step(x1, s1, _grad_fn(scales, centres), MaskLinks([_mask(15)]))
    y_g = c["sigma1"] * s1.y + (1 - c["sigma1"]) * s1.y_f
    z_g = c["sigma1"] * s1.z + (1 - c["sigma1"]) * s1.z_f
    expected_z = (s1.z + c["gamma"] * c["delta"] * (z_g - s1.z)).sum(0)
    expected_m = (c["gamma"] / c["nu"] * (y_g + z_g) + s1.m).sum(0)
    assert torch.allclose(s2.z.sum(0), expected_z, atol=1e-10)
    assert torch.allclose(s2.m.sum(0), expected_m, atol=1e-10)


def test_adom_converges_to_the_exact_optimum_with_its_theoretical_constants():
    # f_i = a_i/2 ||x - c_i||^2 with a_i in [0.5, 1.5]: mu = 0.5, L = 1.5. Complete graph: L(k) = (I - J/N)/2,
    # condition number 1.
    x, centres, scales = _problem(15, dtype=torch.float64)
    full = torch.ones(N, N, dtype=torch.bool)
    algorithm = build_algorithm("adom", lr=1 / 1.5, kappa=3.0, chi=1.0, gossip="metropolis")
    out, _ = _rounds(algorithm, x, _grad_fn(scales, centres), [full], 3000)
    assert torch.allclose(out, _optimum(scales, centres).expand(N, -1), atol=1e-5)


def test_adom_sends_two_vectors_in_one_exchange():
    algorithm = build_algorithm("adom")
    assert payload_bytes(algorithm.messages(10)) == (80,)


@pytest.mark.parametrize("name, field, value", [
    ("hyperprism-fixed", "p", 0.5), ("hyperprism-fixed", "p", 65.0), ("hyperprism", "p_max", 4),
    ("hyperprism", "hn_lr", -1.0), ("swarmsgd", "local_steps", 0), ("mudag", "mix_steps", 0),
    ("mudag", "kappa", 0.5), ("adom", "chi", 0.5), ("adom", "kappa", 0.0), ("adom", "gossip", "ring"),
])
def test_hyperparameters_are_validated_naming_the_field(name, field, value):
    with pytest.raises(ValueError, match=f"^{field}: "):
        build_algorithm(name, **{field: value})


def test_metropolis_of_the_complete_graph_is_exact_averaging():
    assert torch.allclose(metropolis_hastings(torch.ones(4, 4, dtype=torch.bool)), torch.full((4, 4), 0.25))


def test_mudag_without_chebyshev_converges_too():
    x, centres, scales = _problem(16, dtype=torch.float64)
    ring = torch.zeros(N, N, dtype=torch.bool)
    for i in range(N):
        ring[i, (i + 1) % N] = ring[(i + 1) % N, i] = True
    algorithm = build_algorithm("mudag", lr=0.5, kappa=4.0, mix_steps=3, chebyshev=False)
    out, _ = _rounds(algorithm, x, _grad_fn(scales, centres), [ring], 300)
    assert torch.allclose(out, _optimum(scales, centres).expand(N, -1), atol=1e-6)


def test_adaptive_hyperprism_with_the_small_cnn_moves_both_exponents():
    # Real gradients of the 802.11a-sized CNN on real digits: both heads' exponents change within a few rounds.
    from learner.data import dirichlet_partition, load_dataset
    from learner.devices import Devices

    data = load_dataset("digits", 0.2, seed=0)
    model = build_model("cnn-small", data.num_features, data.num_classes, image_shape=data.image_shape)
    assert model.part_mask("representation").any() and model.part_mask("decision").any()
    devices = Devices(model, data, dirichlet_partition(data.y_train, N, 1.0, seed=0), batch_size=16, seed=0)
    x = model.init(N, seed=0)
    algorithm = build_algorithm("hyperprism", lr=0.05)  # the paper's defaults otherwise (hn_lr = lr)
    state = algorithm.init(x, seed=0, model=model)
    initial = state.exponents.clone()
    for r in range(4):
        x, state = algorithm.step(x, state, lambda params: devices.gradients(params)[0], MaskLinks([_mask(r, p=0.8)]))
    moved = (state.exponents - initial).abs()
    assert (moved[:, 0] > 0).all() and (moved[:, 1] > 0).all(), moved  # p_rep and p_dec, every device
    assert torch.isfinite(x).all()
