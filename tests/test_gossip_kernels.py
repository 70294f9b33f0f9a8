"""Push-sum shares, components, the spectral lambda of W and accelerated gossip AG_R, each on its own."""

import math

import pytest
import torch

from learner.mixing import (accelerated_gossip, connected_components, gossip_momentum, metropolis_hastings,
                            push_sum_weights, receiver_mean, spectral_lambda)
from masks import mask_from_edges as _mask


def _ring(n):
    return _mask(n, [(i, (i + 1) % n) for i in range(n)])


def _consensus_error(z):
    return float((z - z.mean(0)).norm())


def test_push_sum_shares_by_hand_with_a_one_way_link():
    # 0 -> 1, 0 -> 2, 1 -> 2, 2 -> 0: device 0 splits in three, 1 in two, 2 in two.
    mask = _mask(3, [(0, 1), (0, 2), (1, 2), (2, 0)], both_ways=False)
    expected = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2], [1 / 2, 0, 1 / 2]])
    assert torch.allclose(push_sum_weights(mask), expected)


def test_push_sum_keeps_the_mass_of_undelivered_messages_with_the_sender():
    generator = torch.Generator().manual_seed(4)
    for trial in range(10):
        n = 4 + trial
        mask = torch.rand(n, n, generator=generator) < 0.3
        shares = push_sum_weights(mask, torch.float64)
        assert torch.allclose(shares.sum(1), torch.ones(n, dtype=torch.float64))
        off = ~torch.eye(n, dtype=torch.bool)
        assert (shares[off & ~mask] == 0).all() and (shares[off & mask] > 0).all()
        values = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        assert torch.allclose((shares.T @ values).sum(0), values.sum(0))
    assert torch.equal(push_sum_weights(torch.zeros(3, 3, dtype=torch.bool)), torch.eye(3))


def test_push_sum_ratio_reaches_the_true_mean_where_receiver_mean_does_not():
    # A directed ring 0->1->2->3->4->0 with two extra one-way chords: strongly connected, unbalanced.
    mask = _mask(5, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 2), (0, 3)], both_ways=False)
    values = torch.tensor([[1.0], [2.0], [4.0], [8.0], [16.0]], dtype=torch.float64)
    shares = push_sum_weights(mask, torch.float64)
    numerators, weights = values.clone(), torch.ones(5, 1, dtype=torch.float64)
    receiver = values.clone()
    for _ in range(200):
        numerators, weights = shares.T @ numerators, shares.T @ weights
        receiver = receiver_mean(mask, receiver)  # device j averages itself and what it received
    assert torch.allclose(numerators / weights, torch.full((5, 1), 6.2, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(receiver, receiver[0].expand(5, 1), atol=1e-9)  # receiver mean agrees ...
    assert abs(float(receiver[0, 0]) - 6.2) > 0.5  # ... on a biased value


def test_connected_components_by_hand():
    links = _mask(6, [(0, 3), (3, 5), (1, 4)])
    assert connected_components(links).tolist() == [0, 1, 2, 0, 1, 0]
    assert connected_components(_mask(4, [(3, 2)], both_ways=False)).tolist() == [0, 1, 2, 2]


@pytest.mark.parametrize("n", [5, 8, 12])
def test_spectral_lambda_of_a_ring_is_its_closed_form(n):
    # Metropolis on a ring puts 1/3 everywhere: eigenvalues 1/3 + 2/3 cos(2 pi k / n).
    assert spectral_lambda(metropolis_hastings(_ring(n), torch.float64)) == pytest.approx(
        1 / 3 + 2 / 3 * math.cos(2 * math.pi / n), abs=1e-12)


def test_spectral_lambda_by_hand_connected_complete_and_disconnected():
    pair = _mask(2, [(0, 1)])  # W = [[1/2, 1/2], [1/2, 1/2]]: eigenvalues 1 and 0
    assert spectral_lambda(metropolis_hastings(pair, torch.float64)) == pytest.approx(0.0, abs=1e-12)
    path = _mask(3, [(0, 1), (1, 2)])  # W has eigenvalues 1, 2/3, 0
    assert spectral_lambda(metropolis_hastings(path)) == pytest.approx(2 / 3, abs=1e-6)
    assert spectral_lambda(metropolis_hastings(torch.ones(6, 6, dtype=torch.bool))) == pytest.approx(0, abs=1e-6)
    # A path plus an isolated device: averaging within components is still at rate 2/3, not 1.
    assert spectral_lambda(metropolis_hastings(_mask(4, [(0, 1), (1, 2)]))) == pytest.approx(2 / 3, abs=1e-6)
    assert spectral_lambda(torch.eye(5)) == 0.0
    assert spectral_lambda(torch.eye(1)) == 0.0


def test_gossip_momentum_closed_form():
    assert gossip_momentum(0.0) == 0.0
    assert gossip_momentum(0.6) == pytest.approx(1 / 9)  # sqrt(1 - 0.36) = 0.8 -> 0.2 / 1.8
    assert gossip_momentum(1.0) == 1.0
    with pytest.raises(ValueError, match="lambda"):
        gossip_momentum(1.5)


def test_one_accelerated_step_by_hand_and_no_momentum_is_plain_gossip():
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    w = metropolis_hastings(_mask(4, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)]), torch.float64)
    assert torch.allclose(accelerated_gossip(z, [w], 0.25), 1.25 * w.T @ z - 0.25 * z)
    second = 1.25 * w.T @ (1.25 * w.T @ z - 0.25 * z) - 0.25 * z
    assert torch.allclose(accelerated_gossip(z, [w, w], 0.25), second)
    assert torch.allclose(accelerated_gossip(z, [w, w, w], 0.0), w.T @ w.T @ w.T @ z)
    assert torch.equal(accelerated_gossip(z, [], 0.5), z)


def test_accelerated_gossip_keeps_the_mean_over_changing_matrices():
    generator = torch.Generator().manual_seed(2)
    z = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    weights = [metropolis_hastings(torch.rand(7, 7, generator=generator) < 0.5, torch.float64) for _ in range(6)]
    assert torch.allclose(accelerated_gossip(z, weights, 0.4).mean(0), z.mean(0))


@pytest.mark.parametrize("n", [12, 20])
def test_accelerated_gossip_contracts_at_its_predicted_rate(n):
    w = metropolis_hastings(_ring(n), torch.float64)
    lam = spectral_lambda(w)
    eta = gossip_momentum(lam)
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    start = _consensus_error(z)
    errors = [_consensus_error(accelerated_gossip(z, [w] * r, eta)) / start for r in range(81)]
    for r, error in enumerate(errors):  # the accelerated-gossip bound sqrt(2) (1 - sqrt(1 - lambda))^R
        assert error <= math.sqrt(2) * (1 - math.sqrt(1 - lam)) ** r + 1e-12, r
    late_rate = (errors[80] / errors[60]) ** (1 / 20)
    assert late_rate == pytest.approx(math.sqrt(eta), rel=0.05)  # asymptotically sqrt(eta) per step ...
    plain = _consensus_error(torch.linalg.matrix_power(w, 40).T @ z) / start
    assert errors[40] < plain / 100  # ... where plain gossip only gets lambda per step
    assert lam ** 40 / 10 < plain <= lam ** 40
