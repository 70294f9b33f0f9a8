import torch

from learner.mixing import (connected_components, fastmix, gossip_laplacian, gossip_momentum, metropolis_hastings,
                            random_matching, symmetric_links)


def test_hand_computed_path_with_a_one_way_link():
    # 0 <-> 1 <-> 2 both ways; 2 -> 3 only one way, so device 3 has no two-way link.
    mask = torch.zeros(4, 4, dtype=torch.bool)
    for i, j in [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3)]:
        mask[i, j] = True
    expected = torch.tensor([
        [1 - 1 / 3, 1 / 3, 0, 0],
        [1 / 3, 1 / 3, 1 / 3, 0],
        [0, 1 / 3, 2 / 3, 0],
        [0, 0, 0, 1],
    ])
    assert torch.allclose(metropolis_hastings(mask), expected)


def test_random_masks_give_doubly_stochastic_weights_zero_off_the_mask():
    generator = torch.Generator().manual_seed(0)
    for trial in range(20):
        n = 3 + trial
        mask = torch.rand(n, n, generator=generator) < 0.5
        weights = metropolis_hastings(mask, torch.float64)
        assert torch.allclose(weights.sum(0), torch.ones(n, dtype=torch.float64))
        assert torch.allclose(weights.sum(1), torch.ones(n, dtype=torch.float64))
        assert torch.equal(weights, weights.T)
        assert (weights >= 0).all()
        two_way = mask & mask.T
        off_diagonal = ~torch.eye(n, dtype=torch.bool)
        assert (weights[off_diagonal & ~two_way] == 0).all()
        assert (weights[off_diagonal & two_way] > 0).all()


def test_no_links_means_identity():
    assert torch.equal(metropolis_hastings(torch.zeros(5, 5, dtype=torch.bool)), torch.eye(5))


def _path_mask(n):
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n - 1):
        mask[i, i + 1] = mask[i + 1, i] = True
    return mask


def test_connected_components_label_each_device_by_its_component():
    mask = torch.zeros(6, 6, dtype=torch.bool)
    for i, j in [(0, 2), (2, 0), (2, 4), (4, 2), (1, 3), (3, 1)]:
        mask[i, j] = True
    assert connected_components(mask).tolist() == [0, 1, 0, 1, 0, 5]


def test_fastmix_by_hand_and_its_invariants():
    path = _path_mask(3)
    weights = metropolis_hastings(path, torch.float64)
    eta = gossip_momentum(2 / 3)
    z = torch.tensor([[3.0], [0.0], [-6.0]], dtype=torch.float64)
    one = weights @ z * (1 + eta) - eta * z  # z_{-1} = z_0
    two = weights @ one * (1 + eta) - eta * z
    assert torch.allclose(fastmix(z, [path, path]), two)
    # Keeps the network average; converges to it faster than plain gossip on a long path.
    n = 12
    long_path = _path_mask(n)
    z = torch.randn(n, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mixed = fastmix(z, [long_path] * 30)
    assert torch.allclose(mixed.mean(0), z.mean(0))
    plain = z.clone()
    w = metropolis_hastings(long_path, torch.float64)
    for _ in range(30):
        plain = w.T @ plain
    assert (mixed - z.mean(0)).norm() < 0.5 * (plain - z.mean(0)).norm()
    # No link: nothing changes.
    assert torch.equal(fastmix(z, [torch.zeros(n, n, dtype=torch.bool)] * 3), z)


def test_gossip_laplacian_is_half_of_identity_minus_metropolis():
    mask = torch.rand(7, 7, generator=torch.Generator().manual_seed(1)) < 0.5
    laplacian = gossip_laplacian(mask, torch.float64)
    assert torch.allclose(laplacian, (torch.eye(7, dtype=torch.float64) - metropolis_hastings(mask, torch.float64)) / 2)
    eigenvalues = torch.linalg.eigvalsh(laplacian)
    assert eigenvalues.min() > -1e-12 and eigenvalues.max() < 1.0
    assert torch.allclose(laplacian @ torch.ones(7, dtype=torch.float64), torch.zeros(7, dtype=torch.float64))


def test_random_matching_is_a_maximal_matching_on_the_links_only():
    generator = torch.Generator().manual_seed(0)
    for trial in range(30):
        n = 2 + trial % 9
        mask = torch.rand(n, n, generator=generator) < 0.5
        links = symmetric_links(mask)
        partner = random_matching(links, generator)
        for i, j in enumerate(partner.tolist()):
            if j >= 0:
                assert links[i, j] and partner[j] == i
        free = partner < 0
        assert not (links & free[:, None] & free[None, :]).any()  # maximal: no link between two free devices


def test_random_matching_is_seeded_and_varies():
    links = symmetric_links(torch.ones(10, 10, dtype=torch.bool))
    first = random_matching(links, torch.Generator().manual_seed(3))
    assert torch.equal(first, random_matching(links, torch.Generator().manual_seed(3)))
    generator = torch.Generator().manual_seed(3)
    draws = {tuple(random_matching(links, generator).tolist()) for _ in range(10)}
    assert len(draws) > 1


def test_fastmix_without_acceleration_is_plain_gossip():
    masks = [_path_mask(5), torch.ones(5, 5, dtype=torch.bool), _path_mask(5)]
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = z
    for mask in masks:
        expected = metropolis_hastings(mask, torch.float64).T @ expected
    assert torch.allclose(fastmix(z, masks, accelerated=False), expected)


def test_the_normalised_laplacian_of_a_path_by_hand():
    from learner.laplacian import laplacian_mixing, normalized_laplacian

    path = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=torch.bool)  # eigenvalues of L: 0, 1, 3
    expected = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 1.0]], dtype=torch.float64) / 3
    assert torch.allclose(normalized_laplacian(path, torch.float64), expected)
    mixing = laplacian_mixing(path, torch.float64)
    assert torch.allclose(mixing.sum(0), torch.ones(3, dtype=torch.float64))  # doubly stochastic
    one_way = torch.tensor([[0, 1], [0, 0]], dtype=torch.bool)  # no two-way link: no mixing
    assert torch.equal(normalized_laplacian(one_way), torch.zeros(2, 2))
