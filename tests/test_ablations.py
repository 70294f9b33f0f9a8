"""The asynchronous D-PSGD ablations against plain per-device loops written from their docstrings, and their
place in the chain dpsgd -> dpsgd_one_way -> dpsgd_cached -> async_dpsgd."""

import torch

from learner.algorithms.dpsgd import DPSGD
from learner.algorithms.dpsgd_cached import DPSGDCached
from learner.algorithms.dpsgd_one_way import DPSGDOneWay

N, D, LR = 5, 3, 0.1


class RoundLinks:
    def __init__(self, mask):
        self.mask = mask

    def exchange(self, senders=None, kept=None):
        return self.mask.clone()


def _grad(x):
    return 0.5 * x + torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape) / 10  # a fixed smooth field


def _masks(rounds, p, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(N, N, generator=generator) < p for _ in range(rounds)]


def _run(algorithm, x, masks):
    state = algorithm.init(x)
    for mask in masks:
        x, state = algorithm.step(x, state, _grad, RoundLinks(mask))
    return x


def reference_one_way(x, masks):
    """The docstring's update, device by device."""
    x, reported = x.clone(), [0] * N
    for mask in masks:
        grad, new, heard_now = _grad(x), [], []
        for j in range(N):
            senders = [i for i in range(N) if i != j and mask[i, j]]
            w = {i: 1.0 / (1.0 + max(reported[i], len(senders))) for i in senders}
            new.append((1 - sum(w.values())) * x[j] + sum(w[i] * x[i] for i in senders) - LR * grad[j])
            heard_now.append(len(senders))
        x, reported = torch.stack(new), heard_now
    return x


def reference_cached(x, masks):
    x = x.clone()
    cache = [dict() for _ in range(N)]  # receiver -> {sender: (model, reported degree)}
    degree = [0] * N  # senders heard by the end of the previous round
    for mask in masks:
        grad, new = _grad(x), []
        for j in range(N):
            for i in range(N):
                if i != j and mask[i, j]:
                    cache[j][i] = (x[i].clone(), degree[i])
        for j in range(N):
            d_j = len(cache[j])
            w = {i: 1.0 / (1.0 + max(d_i, d_j)) for i, (_, d_i) in cache[j].items()}
            new.append((1 - sum(w.values())) * x[j] + sum(w[i] * cache[j][i][0] for i in w) - LR * grad[j])
        x, degree = torch.stack(new), [len(cache[j]) for j in range(N)]
    return x


def test_one_way_mixing_equals_its_per_device_loop_on_lossy_one_way_rounds():
    x = torch.randn(N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for seed in range(5):
        masks = _masks(6, 0.5, seed)
        torch.testing.assert_close(_run(DPSGDOneWay(lr=LR), x, masks), reference_one_way(x, masks),
                                   rtol=1e-12, atol=1e-12)


def test_the_cached_mixing_equals_its_per_device_loop_and_uses_models_heard_rounds_ago():
    x = torch.randn(N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for seed in range(5):
        masks = _masks(6, 0.4, seed)
        torch.testing.assert_close(_run(DPSGDCached(lr=LR), x, masks), reference_cached(x, masks),
                                   rtol=1e-12, atol=1e-12)
    silent_after_one = [torch.ones(N, N, dtype=torch.bool), torch.zeros(N, N, dtype=torch.bool)]
    cached, fresh = _run(DPSGDCached(lr=LR), x, silent_after_one), _run(DPSGDOneWay(lr=LR), x, silent_after_one)
    assert not torch.allclose(cached, fresh)  # round 2 heard nobody: only the cache still mixes


def test_on_a_complete_graph_every_rung_of_the_chain_is_d_psgd():
    x = torch.randn(N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    complete = [torch.ones(N, N, dtype=torch.bool)] * 4
    plain = _run(DPSGD(lr=LR), x, complete)
    torch.testing.assert_close(_run(DPSGDOneWay(lr=LR), x, complete), plain, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_run(DPSGDCached(lr=LR), x, complete), plain, rtol=1e-12, atol=1e-12)


def test_one_way_mixing_is_row_stochastic_but_not_average_preserving():
    from learner.algorithms.dpsgd_one_way import one_way_weights

    heard = torch.tensor([[0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.bool)  # 0 -> 1, 2 -> 0, 2 -> 1
    weights = one_way_weights(heard, torch.zeros(3), torch.float64)
    torch.testing.assert_close(weights.sum(0), torch.ones(3, dtype=torch.float64))  # each receiver's row of W.T
    assert weights[0, 1] == 1 / 3 and weights[2, 1] == 1 / 3 and weights[2, 0] == 1 / 2
    assert not torch.allclose(weights.sum(1), torch.ones(3, dtype=torch.float64))  # columns do not: not doubly
