"""learner/compress.py: exact selection sizes, nothing dropped, eSGD's branches, encoded sizes."""

import math

import pytest
import torch

from learner import compress as C


def _g(n=4, d=50, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("ratio,dim,k", [(1.0, 7850, 7850), (0.5, 7850, 3925), (0.25, 7850, 1962),
                                         (0.125, 7850, 981), (0.1, 7850, 785), (1e-9, 10, 1)])
def test_keep_count(ratio, dim, k):
    assert C.keep_count(dim, ratio) == k


def test_encoded_bytes_hand_computed():
    # d = 7850 (logreg on MNIST): 2-byte indices, bitmap of 982 bytes, dense 31,400 bytes
    assert C.index_bytes(7850) == 2 and C.index_bytes(256) == 1 and C.index_bytes(257) == 2
    assert C.index_bytes(70000) == 4
    assert C.encoded_bytes(7850, 7850) == 31400            # dense, no header
    assert C.encoded_bytes(3925, 7850) == 8 + 982 + 4 * 3925  # bitmap (16,690) beats COO (23,558)
    assert C.encoded_bytes(785, 7850) == 8 + 982 + 4 * 785    # bitmap 4,130 vs COO 4,718
    assert C.encoded_bytes(100, 7850) == 8 + 100 * 6          # COO 608 vs bitmap 1,390
    assert C.encoded_bytes(0, 7850) == 8                      # header only
    assert C.encoded_bytes(3, 10) == 8 + 2 + 12               # bitmap 2 + 12 (COO 15)
    assert C.encoded_bytes(9, 10) == 40                       # dense 40 < 8 + 2 + 36
    with pytest.raises(ValueError, match="count"):
        C.encoded_bytes(11, 10)
    mask = torch.zeros(2, 7850, dtype=torch.bool)
    mask[0, :100] = True
    assert C.encoded_sizes(mask) == [608, 8]


def test_encoded_bytes_shrink_with_k():
    sizes = [C.encoded_bytes(C.keep_count(7850, r), 7850) for r in (1.0, 0.5, 0.25, 0.125, 0.1)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 5


def test_topk_and_threshold_sizes():
    g = _g()
    mask = C.topk_mask(g, 7)
    assert (mask.sum(1) == 7).all()
    smallest_sent = torch.where(mask, g.abs(), math.inf).min(1).values
    largest_unsent = torch.where(mask, -math.inf, g.abs()).max(1).values
    assert (smallest_sent >= largest_unsent).all()
    t = C.threshold_mask(g, 1.0)
    assert torch.equal(t.sum(1), (g.abs() > 1.0).sum(1))


def test_split_loses_nothing():
    g = _g()
    mask = C.topk_mask(g, 5)
    sent, residual = C.split(g, mask)
    assert torch.equal(sent + residual, g)
    assert (sent[~mask] == 0).all() and (residual[mask] == 0).all()


def test_random_and_weighted_sampling_sizes_and_weights():
    u = torch.rand(50, generator=torch.Generator().manual_seed(1))
    r = C.random_mask(u, 3, 10)
    assert (r.sum(1) == 10).all() and torch.equal(r[0], r[2])  # shared draws
    importance = torch.ones(2, 50)
    importance[1, :5] = 1e6  # overwhelming weight: these five are always drawn
    w = C.weighted_sample_mask(importance, u, 10)
    assert (w.sum(1) == 10).all() and w[1, :5].all()
    # frequencies follow the weights: coordinate 0 (weight 9) is drawn far more often than weight-1 ones
    weights = torch.ones(1, 20)
    weights[0, 0] = 9.0
    gen = torch.Generator().manual_seed(0)
    hits = sum(int(C.weighted_sample_mask(weights, torch.rand(20, generator=gen), 1)[0, 0]) for _ in range(2000))
    assert 0.25 < hits / 2000 < 0.4  # P = 9 / 28 = 0.32


def test_esgd_random_rounds_then_loss_triggered_branch():
    n, d, k = 3, 30, 6
    u = torch.rand(d, generator=torch.Generator().manual_seed(2))
    h = torch.ones(n, d)
    prev = C.random_mask(torch.rand(d, generator=torch.Generator().manual_seed(3)), n, k)
    for t in (0, 1):  # random, whatever the losses
        sel, h2 = C.esgd_select(t, k, prev, h, torch.zeros(n), torch.ones(n), u)
        assert torch.equal(sel, C.random_mask(u, n, k)) and torch.equal(h2, h)
    loss = torch.tensor([0.5, 2.0, 1.0])
    previous_loss = torch.tensor([1.0, 1.0, 1.0])  # device 0 improved; 1 got worse; 2 equal (not <)
    sel, h2 = C.esgd_select(2, k, prev, h, loss, previous_loss, u, importance_step=0.5)
    assert torch.equal(sel[0], prev[0])  # kept
    assert torch.equal(h2[0], h[0] + 0.5 * prev[0].float())  # its importance raised
    resampled = C.weighted_sample_mask(h, u, k)
    assert torch.equal(sel[1:], resampled[1:]) and torch.equal(h2[1:], h[1:])
    assert (sel.sum(1) == k).all()


def test_replacement_swaps_lowest_importance_and_keeps_k():
    sel = torch.tensor([[True, True, True, False, False, False]])
    h = torch.tensor([[3.0, 1.0, 2.0, 9.0, 9.0, 9.0]])
    acc = torch.tensor([[0.0, 0.0, 0.0, 5.0, 0.1, 4.0]])
    out = C.replace_lowest_importance(sel, h, acc, torch.tensor([1.0]))
    # candidates 3 (|5|) and 5 (|4|) replace the two lowest-H selected: 1 (H=1) and 2 (H=2)
    assert out.tolist() == [[True, False, False, True, False, True]]
    none = C.replace_lowest_importance(sel, h, acc, torch.tensor([10.0]))
    assert torch.equal(none, sel)
    many = C.replace_lowest_importance(sel, h, torch.tensor([[0.0, 0, 0, 5, 6, 7]]), torch.tensor([0.0]))
    assert many.tolist() == [[False, False, False, True, True, True]]


def _replace_row_by_row(selected, importance, accumulated, threshold):
    """eSGD's residual replacement written plainly, one device at a time (the reference)."""
    out = selected.clone()
    magnitude = accumulated.abs()
    for row in range(selected.shape[0]):
        chosen = selected[row].nonzero().squeeze(1)
        candidates = (~selected[row] & (magnitude[row] > threshold[row])).nonzero().squeeze(1)
        m = min(candidates.numel(), chosen.numel())
        if m:
            out[row, chosen[importance[row, chosen].argsort()[:m]]] = False
            out[row, candidates[magnitude[row, candidates].argsort(descending=True)[:m]]] = True
    return out


def test_replacement_of_all_rows_at_once_equals_a_row_by_row_loop():
    generator = torch.Generator().manual_seed(7)
    rows, dim = 9, 40
    for _ in range(20):
        selected = torch.rand(rows, dim, generator=generator) < 0.3
        importance = torch.rand(rows, dim, generator=generator) * 5  # distinct values: no ties to break
        accumulated = torch.randn(rows, dim, generator=generator)
        threshold = torch.rand(rows, generator=generator) * 2
        out = C.replace_lowest_importance(selected, importance, accumulated, threshold)
        assert torch.equal(out, _replace_row_by_row(selected, importance, accumulated, threshold))
        assert torch.equal(out.sum(1), selected.sum(1))
