"""The sparsification family: dense SGD, threshold SGD, eSGD, DGC, CHOCO-SGD."""

import pytest
import torch

from bridge import obtain_trace
from learner.algorithms import build_algorithm
from learner.algorithms.base import gradients_and_losses
from learner.compress import encoded_bytes, keep_count
from ns3_scenarios.scenario import ScenarioConfig

N, D = 5, 40


class MaskLinks:
    def __init__(self, *masks):
        self.masks = list(masks)
        self.payloads = []

    def exchange(self, payload_bytes):
        self.payloads.append(payload_bytes)
        return self.masks.pop(0) if len(self.masks) > 1 else self.masks[0].clone()


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g) * 0.1
    centres = torch.randn(N, D, generator=g)
    return x, lambda params: params - centres


def _full():
    return ~torch.eye(N, dtype=torch.bool)


def test_dense_sgd_applies_the_receiver_mean():
    x, grad_fn = _problem()
    mask = torch.zeros(N, N, dtype=torch.bool)
    mask[1, 0] = mask[2, 0] = True  # device 0 hears 1 and 2
    out, _ = build_algorithm("dense_sgd", lr=0.5).step(x, None, grad_fn, MaskLinks(mask))
    g = grad_fn(x)
    assert torch.allclose(out[0], x[0] - 0.5 * g[:3].mean(0), atol=1e-6)
    assert torch.allclose(out[3], x[3] - 0.5 * g[3], atol=1e-6)


def test_esgd_with_everything_kept_is_dense_sgd():
    x, grad_fn = _problem()
    esgd = build_algorithm("esgd", keep_ratio=1.0, lr=0.3)
    dense = build_algorithm("dense_sgd", lr=0.3)
    state, y = esgd.init(x), x
    for _ in range(3):
        x, state = esgd.step(x, state, grad_fn, MaskLinks(_full()))
        y, _ = dense.step(y, None, grad_fn, MaskLinks(_full()))
    assert torch.allclose(x, y, atol=1e-6)


@pytest.mark.parametrize("ratio", [0.5, 0.25, 0.125, 0.1])
def test_esgd_sends_exactly_k_and_drops_nothing(ratio):
    x, grad_fn = _problem()
    esgd = build_algorithm("esgd", keep_ratio=ratio, lr=1.0)
    k = keep_count(D, ratio)
    state = esgd.init(x, seed=3)
    alone = torch.zeros(N, N, dtype=torch.bool)  # no neighbours: x_new = x - lr * s
    for _ in range(5):
        links = MaskLinks(alone)
        g = grad_fn(x)
        new_x, new_state = esgd.step(x, state, grad_fn, links)
        assert links.payloads == [encoded_bytes(k, D)] == list(esgd.exchange_payloads(D))
        assert (new_state.selection.sum(1) == k).all()
        sent = x - new_x
        assert (sent[~new_state.selection] == 0).all() and (new_state.residual[new_state.selection] == 0).all()
        assert torch.allclose(sent + new_state.residual, esgd.beta * state.residual + g, atol=1e-6)
        x, state = new_x, new_state


def test_esgd_reads_losses_through_with_loss_and_keeps_selection_when_loss_falls():
    x, plain = _problem()
    losses = iter([torch.full((N,), v) for v in (5.0, 4.0, 3.0, 2.0)])

    def grad_fn(params):
        return plain(params)

    grad_fn.with_loss = lambda params: (plain(params), next(losses))
    assert gradients_and_losses(plain, x)[1] is None
    esgd = build_algorithm("esgd", keep_ratio=0.25, importance_step=2.0)
    state = esgd.init(x)
    for _ in range(3):
        previous = state
        x, state = esgd.step(x, state, grad_fn, MaskLinks(_full()))
    assert torch.equal(state.loss, torch.full((N,), 3.0))
    # round 2: every loss fell, so the kept selection's importance rose by 2 (replacement may swap some out)
    assert torch.equal(state.importance, previous.importance + 2.0 * previous.selection.float())


def test_threshold_sgd_sends_per_sender_sizes_of_its_selection():
    x, grad_fn = _problem()
    algorithm = build_algorithm("threshold_sgd", threshold=0.8, lr=1.0)
    links = MaskLinks(torch.zeros(N, N, dtype=torch.bool))
    residual = algorithm.init(x)
    new_x, new_residual = algorithm.step(x, residual, grad_fn, links)
    g = grad_fn(x)
    chosen = g.abs() > 0.8
    assert links.payloads == [[encoded_bytes(int(c), D) for c in chosen.sum(1)]]
    assert torch.allclose((x - new_x) + new_residual, g, atol=1e-6)


def test_threshold_sgd_offline_gets_the_bridge_error(tmp_path):
    trace, _ = obtain_trace("synthetic", ScenarioConfig(devices=N), (4 * D,), 2, 0, tmp_path)
    x, grad_fn = _problem()
    algorithm = build_algorithm("threshold_sgd", threshold=0.8)
    with pytest.raises(RuntimeError, match='network.mode = "online"'):
        algorithm.step(x, algorithm.init(x), grad_fn, trace.round_links(0))


def test_dgc_accumulates_momentum_and_drops_nothing():
    x, grad_fn = _problem()
    dgc = build_algorithm("dgc", keep_ratio=0.25, momentum=0.5, lr=1.0)
    k = keep_count(D, 0.25)
    u, v = dgc.init(x)
    alone = torch.zeros(N, N, dtype=torch.bool)
    for _ in range(3):
        g = grad_fn(x)
        new_x, (new_u, new_v) = dgc.step(x, (u, v), grad_fn, MaskLinks(alone))
        sent = x - new_x
        assert ((sent != 0).sum(1) <= k).all()
        assert torch.allclose(sent + new_v, v + 0.5 * u + g, atol=1e-6)
        assert (new_u[sent != 0] == 0).all()  # momentum factor masking
        x, u, v = new_x, new_u, new_v


def test_choco_copies_stay_in_sync_without_loss_and_desynchronise_for_good_after_one():
    x, grad_fn = _problem()
    choco = build_algorithm("choco_sgd", keep_ratio=0.25, gamma=0.3)
    state = choco.init(x)
    full = _full()
    others = ~torch.eye(N, dtype=torch.bool)
    for _ in range(3):
        x, state = choco.step(x, state, grad_fn, MaskLinks(full))
        assert torch.allclose(state.copies[others], state.estimate.expand(N, N, D)[others.T], atol=1e-6)
    lossy = full.clone()
    lossy[1, 0] = False  # device 0 misses device 1's q this round
    before = state.estimate[1].clone()
    x, state = choco.step(x, state, grad_fn, MaskLinks(lossy))
    lost_q = state.estimate[1] - before
    assert lost_q.abs().sum() > 0
    assert torch.allclose(state.estimate[1] - state.copies[0, 1], lost_q, atol=1e-6)
    for _ in range(3):  # later deliveries never repair the copy
        x, state = choco.step(x, state, grad_fn, MaskLinks(full))
        assert torch.allclose(state.estimate[1] - state.copies[0, 1], lost_q, atol=1e-6)
        assert torch.allclose(state.copies[2, 1], state.estimate[1], atol=1e-6)


def test_choco_reaches_consensus_on_a_lossless_network():
    x, _ = _problem()
    choco = build_algorithm("choco_sgd", keep_ratio=0.5, gamma=0.5, lr=0.0 + 1e-9)
    state = choco.init(x)
    spread = (x - x.mean(0)).norm()
    for _ in range(60):
        x, state = choco.step(x, state, lambda p: torch.zeros_like(p), MaskLinks(_full()))
    assert (x - x.mean(0)).norm() < 0.05 * spread


@pytest.mark.parametrize("name,field", [("esgd", "keep_ratio"), ("dgc", "keep_ratio"), ("choco_sgd", "gamma"),
                                        ("threshold_sgd", "threshold")])
def test_hyperparameters_are_checked(name, field):
    with pytest.raises(ValueError, match=f"^{field}: "):
        build_algorithm(name, **{field: -1.0})


def test_esgd_table_sweep_sends_the_encoded_size_of_each_k(tmp_path):
    """End to end on the synthetic link model: each k's payload reaches the trace and the table."""
    from experiments import esgd_table
    from experiments.sweep import load_sweep, run_sweep

    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text('rounds = 3\ndevices = 4\n[sweep]\nname = "t"\n[data]\ndataset = "digits"\nalpha = 1.0\n'
                          '[algorithm]\nname = ["esgd", "dgc"]\nkeep_ratio = [1.0, 0.25]\n'
                          '[network]\nlink_model = "synthetic"\n')
    sweep = load_sweep(sweep_file)
    run_sweep(sweep, tmp_path / "results", tmp_path / "cache", workers=1)
    assert esgd_table.main([str(sweep_file), "--results", str(tmp_path / "results")]) == 0
    table = __import__("pandas").read_csv(tmp_path / "results" / "sweeps" / "t" / "esgd_table.csv")
    dim = 64 * 10 + 10  # logreg on 8x8 digits
    expected = {100.0: encoded_bytes(dim, dim), 25.0: encoded_bytes(keep_count(dim, 0.25), dim)}
    assert len(table) == 4
    for _, row in table.iterrows():
        assert row["payload B"] == expected[row["keep %"]]


def _choco_reference_step(choco, x, estimate, copies, grad_fn, mask):
    """CHOCO-SGD written out per device: the paper's update, a plain loop over receivers and senders."""
    n, d = x.shape
    k = keep_count(d, choco.keep_ratio)
    half = x - choco.lr * grad_fn(x)
    q = torch.zeros_like(x)
    for i in range(n):
        chosen = (half[i] - estimate[i]).abs().topk(k).indices
        q[i, chosen] = (half[i] - estimate[i])[chosen]
    estimate, copies = estimate + q, copies.clone()
    for j in range(n):
        for i in range(n):
            if mask[i, j]:
                copies[j, i] += q[i]
    both = mask & mask.T
    new_x = half.clone()
    for j in range(n):
        neighbours = [i for i in range(n) if i != j and both[i, j]]
        for i in neighbours:  # Metropolis-Hastings: 1 / (1 + max(deg_i, deg_j))
            degree_i = int(both[:, i].sum()) - int(both[i, i])
            degree_j = int(both[:, j].sum()) - int(both[j, j])
            new_x[j] += choco.gamma / (1 + max(degree_i, degree_j)) * (copies[j, i] - estimate[j])
    return new_x, estimate, copies


def test_choco_step_equals_a_per_device_loop_over_lossy_rounds():
    x, grad_fn = _problem(3)
    choco = build_algorithm("choco_sgd", keep_ratio=0.2, gamma=0.4, lr=0.1)
    state = choco.init(x)
    generator = torch.Generator().manual_seed(4)
    reference = (x, state.estimate, state.copies)
    for _ in range(4):
        mask = torch.rand(N, N, generator=generator) < 0.6
        old, kept = state, (state.estimate.clone(), state.copies.clone())
        x, state = choco.step(x, state, grad_fn, MaskLinks(mask))
        assert torch.equal(old.estimate, kept[0]) and torch.equal(old.copies, kept[1])  # the old state is untouched
        reference = _choco_reference_step(choco, *reference, grad_fn, mask)
        assert torch.allclose(x, reference[0], atol=1e-6)
        assert torch.allclose(state.estimate, reference[1], atol=1e-6)
        assert torch.allclose(state.copies, reference[2], atol=1e-6)
