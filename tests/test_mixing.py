import torch

from learner.mixing import metropolis_hastings


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
