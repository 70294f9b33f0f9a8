"""The weighted power mean against hand-computed cases, its bounds, its p-derivative and its numerics."""

import pytest
import torch

from learner.mixing import metropolis_hastings
from learner.powermean import power_mean


def _weights(n, seed, p=0.6):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, n, generator=generator) < p
    return metropolis_hastings(mask, torch.float64)


def test_hand_computed_two_devices():
    # Receiver 0 weights itself 1/2 and device 1 by 1/2; p = 3:
    # u = (2^3 + (-1)^3) / 2 = 3.5, M = 3.5^(1/3).
    x = torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    weights = torch.full((2, 2), 0.5, dtype=torch.float64)
    assert torch.allclose(power_mean(x, weights, 3.0)[0], torch.tensor([3.5 ** (1 / 3)], dtype=torch.float64))
    # With mixed signs the mean can cross zero: (1^3 - 2^3) / 2 = -3.5.
    x = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    assert torch.allclose(power_mean(x, weights, 3.0)[0], torch.tensor([-(3.5 ** (1 / 3))], dtype=torch.float64))


def test_equals_a_per_receiver_loop_with_per_receiver_exponents():
    generator = torch.Generator().manual_seed(0)
    n, d = 5, 7
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    weights = _weights(n, 1)
    p = 1 + 8 * torch.rand(n, d, generator=generator, dtype=torch.float64)
    mean = power_mean(x, weights, p)
    for j in range(n):
        for k in range(d):
            u = sum(float(weights[i, j]) * _phi(float(x[i, k]), float(p[j, k])) for i in range(n))
            assert float(mean[j, k]) == pytest.approx(_phi(u, 1 / float(p[j, k])), rel=1e-9, abs=1e-12)


def _phi(value, p):
    return (1 if value >= 0 else -1) * abs(value) ** p


def test_p_one_is_the_weighted_arithmetic_mean():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(6, 40, generator=generator)
    weights = _weights(6, 3)
    assert torch.allclose(power_mean(x, weights, 1.0), (weights.T @ x.double()).float(), atol=1e-6)


@pytest.mark.parametrize("p", [1.0, 3.0, 9.0, 31.0])
def test_identical_models_give_that_model(p):
    row = torch.randn(1, 50, generator=torch.Generator().manual_seed(4))
    x = row.expand(6, -1).clone()
    assert torch.allclose(power_mean(x, _weights(6, 5), p), x, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("p", [1.0, 2.5, 5.0, 9.0])
def test_lies_between_the_min_and_max_of_what_each_receiver_heard(p):
    generator = torch.Generator().manual_seed(6)
    n = 7
    x = torch.randn(n, 60, generator=generator, dtype=torch.float64) * 3
    weights = _weights(n, 7, p=0.5)
    mean = power_mean(x, weights, p)
    for j in range(n):
        heard = x[weights[:, j] > 0]
        assert (mean[j] >= heard.min(0).values - 1e-12).all() and (mean[j] <= heard.max(0).values + 1e-12).all()


def test_large_exponents_stay_finite_in_float32_inputs():
    # |w|^9 overflows float32 for |w| > ~2e4 and underflows for |w| < ~1e-5; the scaled float64 path does neither.
    x = torch.tensor([[3e4, 1e-6, -5e4], [1e4, -2e-6, 4e4], [2e4, 3e-6, 1.0]], dtype=torch.float32)
    weights = torch.full((3, 3), 1 / 3, dtype=torch.float64)
    for p in (9.0, 31.0, 63.0):
        mean = power_mean(x, weights, p)
        assert torch.isfinite(mean).all()
        assert (mean >= x.min(0).values).all() and (mean <= x.max(0).values).all()
    # p = 9 by hand for the middle column: u = (1 - 2^9 + 3^9) / 3 * 1e-54.
    expected = ((1 - 2 ** 9 + 3 ** 9) / 3) ** (1 / 9) * 1e-6
    assert float(power_mean(x, weights, 9.0)[0, 1]) == pytest.approx(expected, rel=1e-6)


def test_undelivered_values_have_no_influence_even_when_not_finite():
    x = torch.tensor([[1.0, -2.0], [float("inf"), float("nan")], [0.5, 3.0]])
    weights = torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], dtype=torch.float64)
    mean = power_mean(x, weights, 5.0)
    assert torch.isfinite(mean[[0, 2]]).all()
    moved = x.clone()
    moved[1] = torch.tensor([-7.0, 1e30])
    assert torch.equal(power_mean(moved, weights, 5.0)[[0, 2]], mean[[0, 2]])


def test_zero_inputs_give_zero():
    x = torch.zeros(3, 4)
    assert torch.equal(power_mean(x, _weights(3, 8), 7.0), x)


def test_derivative_in_p_matches_finite_differences():
    generator = torch.Generator().manual_seed(9)
    n, d = 5, 30
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    x[0, 0] = 0.0  # a zero input
    weights = _weights(n, 10)
    p = 1 + 6 * torch.rand(n, 1, generator=generator, dtype=torch.float64)
    _, slope = power_mean(x, weights, p, with_dp=True)
    h = 1e-6
    numeric = (power_mean(x, weights, p + h) - power_mean(x, weights, p - h)) / (2 * h)
    assert torch.allclose(slope, numeric, rtol=1e-5, atol=1e-8)


def test_chunked_receivers_equal_one_chunk(monkeypatch):
    import learner.powermean as module

    generator = torch.Generator().manual_seed(11)
    x = torch.randn(9, 13, generator=generator, dtype=torch.float64)
    weights = _weights(9, 12)
    whole = power_mean(x, weights, 5.0, with_dp=True)
    monkeypatch.setattr(module, "CHUNK_ELEMENTS", 2 * 9 * 13)  # at most two receivers per chunk
    chunked = power_mean(x, weights, 5.0, with_dp=True)
    assert torch.allclose(whole[0], chunked[0], rtol=1e-13) and torch.allclose(whole[1], chunked[1], rtol=1e-13)


def _float64_reference(x: torch.Tensor, weights: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per receiver, in float64: the power mean and the scale s_j = max |x_i| over the senders it weights."""
    x, weights = x.double(), weights.double()
    p = p.double().expand(x.shape)
    mean, scale = torch.zeros_like(x), torch.zeros_like(x)
    for j in range(x.shape[0]):
        heard = x[weights[:, j] > 0]
        s = heard.abs().amax(0)
        ratio = torch.where(s > 0, heard.abs() / torch.where(s > 0, s, 1.0), 0.0)
        u = (weights[weights[:, j] > 0, j][:, None] * torch.sign(heard) * ratio ** p[j]).sum(0)
        mean[j], scale[j] = s * torch.sign(u) * u.abs() ** (1 / p[j]), s
    return mean, scale


def test_float32_matches_a_float64_reference_with_zeros_negatives_wide_magnitudes_and_large_p():
    # ln|x| is split into float32 high and low parts: the float32 path must keep float64-like log ratios.
    generator = torch.Generator().manual_seed(12)
    n, d = 9, 400
    x = torch.randn(n, d, generator=generator) * torch.exp(torch.randn(n, d, generator=generator) * 4)
    x[torch.rand(n, d, generator=generator) < 0.15] = 0.0
    x[:, :40] = x[:, :40].abs()  # same-sign columns: no cancellation
    weights = _weights(n, 13, p=0.5)
    weights[:, 0], weights[0, :] = 0.0, 0.0
    weights[0, 0] = 1.0  # receiver 0 heard no one but itself
    p = torch.where(torch.arange(d) < d // 2, 1 + 8 * torch.rand(n, 1, generator=generator),
                    1 + 62 * torch.rand(n, 1, generator=generator))
    mean = power_mean(x, weights, p)
    assert mean.dtype == torch.float32 and torch.isfinite(mean).all()
    reference, scale = _float64_reference(x, weights, p)
    assert torch.allclose(mean[0], x[0], rtol=1e-6, atol=0.0)
    # in the mirror space phi_p(M / s), where the mean's conditioning does not enter: a few float32 roundings
    phi = lambda m: torch.sign(m) * (m.abs() / torch.where(scale > 0, scale, 1.0)) ** p.double()
    assert (phi(mean.double()) - phi(reference)).abs().max() < 1e-5
    same_sign = (reference[:, :40] - mean[:, :40].double()).abs() / reference[:, :40].abs().clamp(min=1e-300)
    assert same_sign.max() < 1e-5
