"""The sparsification family: dense SGD, threshold SGD, eSGD, DGC, CHOCO-SGD."""

import io

import numpy as np
import pandas as pd
import pytest
import torch

from bridge import obtain_trace
from learner.algorithms.base import DeclaredLinks, payload_bytes
from learner.algorithms.registry import build_algorithm
from learner.algorithms.base import gradients_and_losses
from learner.compress import encoded_bytes, keep_count
from ns3_scenarios.scenario import ScenarioConfig

N, D = 5, 40


class MaskLinks:
    def __init__(self, *masks):
        self.masks = list(masks)
        self.payloads = []

    def exchange(self, payload_bytes=None, senders=None, kept=None):
        self.payloads.append(payload_bytes)
        return self.masks.pop(0) if len(self.masks) > 1 else self.masks[0].clone()


class ServerLinks(MaskLinks):
    """Uplink and downlink masks of the access-point scenario: ``up[j]`` = the server received device j,
    ``down[j]`` = device j received the server's model; one (up, down) pair per round, in order."""

    def __init__(self, *rounds):
        masks = []
        for up, down in rounds:
            for column, row in ((up, None), (None, down)):
                full = torch.zeros(N + 1, N + 1, dtype=torch.bool)
                if column is not None:
                    full[:N, N] = torch.tensor(column)
                else:
                    full[N, :N] = torch.tensor(row)
                masks.append(full)
        super().__init__(*masks)


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g) * 0.1
    centres = torch.randn(N, D, generator=g)
    return x, lambda params: params - centres


def _full():
    return ~torch.eye(N, dtype=torch.bool)


ALL = [True] * N


def _lossy_rounds(rounds, seed=7, p=0.6):
    g = torch.Generator().manual_seed(seed)
    return [((torch.rand(N, generator=g) < p).tolist(), (torch.rand(N, generator=g) < p).tolist())
            for _ in range(rounds)]


def test_dense_sgd_server_sums_what_arrived_and_only_devices_that_downloaded_take_the_model():
    x, grad_fn = _problem()
    algorithm = build_algorithm("dense_sgd", lr=0.5)
    up, down = [True, False, True, False, False], [True, True, False, False, False]
    links = ServerLinks((up, down))
    out, global_model = algorithm.step(x, algorithm.init(x), grad_fn, DeclaredLinks(links, algorithm.messages(D), N))
    g = grad_fn(x)
    expected = x[0] - 0.5 / N * (g[0] + g[2])
    assert torch.allclose(global_model, expected, atol=1e-6)
    assert torch.allclose(out[:2], expected.expand(2, D)) and torch.equal(out[2:], x[2:])  # stale copies kept
    assert links.payloads == [[4 * D] * N + [0], [0] * N + [4 * D]]


def test_esgd_with_everything_kept_is_dense_sgd_through_the_server():
    x, grad_fn = _problem()
    esgd = build_algorithm("esgd", keep_ratio=1.0, lr=0.3)
    dense = build_algorithm("dense_sgd", lr=0.3)
    state, y, dense_state = esgd.init(x), x, dense.init(x)
    for round_masks in _lossy_rounds(3):
        x, state = esgd.step(x, state, grad_fn, ServerLinks(round_masks))
        y, dense_state = dense.step(y, dense_state, grad_fn, ServerLinks(round_masks))
    assert torch.allclose(x, y, atol=1e-6)


@pytest.mark.parametrize("ratio", [0.5, 0.25, 0.125, 0.1])
def test_esgd_sends_exactly_k_and_drops_nothing(ratio):
    x, grad_fn = _problem()
    esgd = build_algorithm("esgd", keep_ratio=ratio, lr=1.0)
    k = keep_count(D, ratio)
    state = esgd.init(x, seed=3)
    for _ in range(5):
        links = ServerLinks((ALL, ALL))
        g = grad_fn(x)
        new_x, new_state = esgd.step(x, state, grad_fn, DeclaredLinks(links, esgd.messages(D), N))
        assert links.payloads[0] == [encoded_bytes(k, D)] * N + [0]
        assert list(payload_bytes(esgd.messages(D))) == [encoded_bytes(k, D), 4 * D]
        assert (new_state.selection.sum(1) == k).all() and (new_state.residual[new_state.selection] == 0).all()
        sent_sum = (state.global_model - new_state.global_model) * N  # lr = 1: the sum of what was sent
        assert torch.allclose(sent_sum + new_state.residual.sum(0), (esgd.beta * state.residual + g).sum(0),
                              atol=1e-5)
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
        x, state = esgd.step(x, state, grad_fn, ServerLinks((ALL, ALL)))
    assert torch.equal(state.loss, torch.full((N,), 3.0))
    # round 2: every loss fell, so the kept selection's importance rose by 2 (replacement may swap some out)
    assert torch.equal(state.importance, previous.importance + 2.0 * previous.selection.float())


def test_esgd_paper_schedule_halves_per_epoch():
    esgd = build_algorithm("esgd", lr=0.1, epoch_rounds=10)
    assert [esgd.learning_rate(r) for r in (0, 9, 10, 25)] == pytest.approx([0.05, 0.05, 0.025, 0.1 / 6])
    assert build_algorithm("esgd", lr=0.1).learning_rate(50) == 0.1


def test_threshold_sgd_uploads_per_device_sizes_of_its_selection():
    x, grad_fn = _problem()
    algorithm = build_algorithm("threshold_sgd", threshold=0.8, lr=1.0)
    links = ServerLinks((ALL, ALL))
    state = algorithm.init(x)
    _, new_state = algorithm.step(x, state, grad_fn, DeclaredLinks(links, algorithm.messages(D), N))
    g = grad_fn(x)
    chosen = g.abs() > 0.8
    assert links.payloads[0] == [encoded_bytes(int(c), D) for c in chosen.sum(1)] + [0]
    sent_sum = (state.global_model - new_state.global_model) * N
    assert torch.allclose(sent_sum + new_state.residual.sum(0), g.sum(0), atol=1e-5)


def test_threshold_sgd_offline_gets_the_bridge_error(tmp_path):
    scenario = ScenarioConfig(devices=N, topology="access_point")
    trace, _ = obtain_trace("synthetic", scenario, (4 * D, 4 * D), 2, 0, tmp_path)
    x, grad_fn = _problem()
    algorithm = build_algorithm("threshold_sgd", threshold=0.8)
    with pytest.raises(RuntimeError, match='network.mode = "online"'):
        algorithm.step(x, algorithm.init(x), grad_fn, DeclaredLinks(trace.round_links(0), algorithm.messages(D), N))


def test_dgc_accumulates_momentum_and_drops_nothing():
    x, grad_fn = _problem()
    dgc = build_algorithm("dgc", keep_ratio=0.25, momentum=0.5, lr=1.0)
    k = keep_count(D, 0.25)
    state = dgc.init(x)
    for _ in range(3):
        g = grad_fn(x)
        links = ServerLinks((ALL, ALL))
        new_x, new_state = dgc.step(x, state, grad_fn, DeclaredLinks(links, dgc.messages(D), N))
        assert links.payloads[0] == [encoded_bytes(k, D)] * N + [0]
        sent_sum = (state.global_model - new_state.global_model) * N
        assert torch.allclose(sent_sum + new_state.accumulated.sum(0),
                              (state.accumulated + 0.5 * state.momentum + g).sum(0), atol=1e-5)
        assert ((new_state.accumulated == 0).sum(1) >= k).all()  # the sent coordinates were reset
        x, state = new_x, new_state


def _esgd_reference(esgd, x, grad_fn, rounds, seed):
    """Server eSGD written out per device from the update rule, one device at a time (the selection rules
    are learner.compress's, checked on their own in test_compress.py)."""
    from learner.compress import esgd_select, replace_lowest_importance

    n, d = x.shape
    k = keep_count(d, esgd.keep_ratio)
    w = x[0].clone()
    selection, importance = torch.zeros(n, d, dtype=torch.bool), torch.ones(n, d)
    residual, last_loss = torch.zeros(n, d), torch.full((n,), float("inf"))
    generator = torch.Generator().manual_seed(seed)
    for t, (up, down) in enumerate(rounds):
        uniforms = torch.rand(d, generator=generator, dtype=torch.float64)
        grads = torch.stack([grad_fn(x)[j] for j in range(n)])  # device j's gradient at its own model
        loss = 0.5 * grads.pow(2).sum(1)
        new_selection, importance = esgd_select(t, k, selection, importance, loss, last_loss, uniforms,
                                                esgd.importance_step)
        total = torch.zeros(d)
        for j in range(n):
            accumulated = esgd.beta * residual[j] + grads[j]
            chosen = replace_lowest_importance(new_selection[j:j + 1], importance[j:j + 1],
                                               accumulated[None], grads[j].abs().mean()[None])[0]
            if up[j]:
                total += torch.where(chosen, accumulated, 0.0)
            residual[j] = torch.where(chosen, 0.0, accumulated)
            new_selection[j] = chosen
        selection, last_loss = new_selection, loss
        w = w - esgd.lr / n * total
        x = torch.stack([w if down[j] else x[j] for j in range(n)])
    return x


def test_server_esgd_equals_a_per_device_loop_over_lossy_up_and_down_masks():
    x, grad_fn = _problem()
    esgd = build_algorithm("esgd", keep_ratio=0.25, lr=0.5)
    rounds = _lossy_rounds(6)
    state, y = esgd.init(x, seed=4), x
    for round_masks in rounds:
        y, state = esgd.step(y, state, grad_fn, ServerLinks(round_masks))
    assert torch.allclose(y, _esgd_reference(esgd, x, grad_fn, rounds, seed=4), atol=1e-6)


def _fedavg_reference(fedavg, x, grad_fn, samples, rounds, seed):
    """FedAvg from McMahan et al.'s update, one device at a time."""
    n = x.shape[0]
    w = x[0].clone()
    generator = torch.Generator().manual_seed(seed)
    for up, down in rounds:
        chosen = torch.randperm(n, generator=generator)[:max(1, round(fedavg.client_fraction * n))].tolist()
        for j in chosen:
            for _ in range(fedavg.local_steps):
                x[j] = x[j] - fedavg.lr * grad_fn(x)[j]
        arrived = [j for j in chosen if up[j]]
        if arrived:
            w = sum(samples[j] * x[j] for j in arrived) / sum(samples[j] for j in arrived)
        for j in range(n):
            if down[j]:
                x[j] = w.clone()
    return x


@pytest.mark.parametrize("fraction", [1.0, 0.6])
def test_fedavg_equals_a_per_device_loop_over_lossy_up_and_down_masks(fraction):
    x, grad_fn = _problem()
    fedavg = build_algorithm("fedavg", lr=0.2, local_steps=3, client_fraction=fraction)
    samples = [10, 40, 25, 5, 20]
    rounds = _lossy_rounds(5, seed=11)
    state, y = fedavg.init(x, seed=2, samples=samples), x
    for round_masks in rounds:
        links = ServerLinks(round_masks)
        y, state = fedavg.step(y, state, grad_fn, DeclaredLinks(links, fedavg.messages(D), N))
    assert torch.allclose(y, _fedavg_reference(fedavg, x.clone(), grad_fn, samples, rounds, seed=2), atol=1e-5)
    if fraction < 1:  # only the chosen devices upload; the others send nothing
        assert sorted(set(links.payloads[0][:N])) == [0, 4 * D] and fedavg.messages(D)[0].per_sender


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


def test_esgd_table_sweep_sends_the_encoded_size_of_each_k_up_and_the_model_down(tmp_path):
    """End to end on the synthetic link model through the access point: each k's upload size reaches the
    trace, the model comes down, and the table separates the two directions."""
    from experiments.campaigns import esgd_table
    from experiments.run.sweep import load_sweep, run_sweep

    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text('rounds = 3\ndevices = 4\n[sweep]\nname = "t"\n[data]\ndataset = "digits"\nalpha = 1.0\n'
                          '[algorithm]\nname = ["esgd", "dgc"]\nkeep_ratio = [1.0, 0.25]\n'
                          '[network]\nlink_model = "ideal"\ntopology = "access_point"\ndensity = 1.0\n')
    sweep = load_sweep(sweep_file)
    run_sweep(sweep, tmp_path / "results", tmp_path / "cache", workers=1)
    runs = pd.read_csv(io.StringIO(esgd_table.runs_table([sweep], tmp_path / "results")))
    dim = 64 * 10 + 10  # logreg on 8x8 digits
    for _, config in sweep.runs:
        links = pd.read_csv(tmp_path / "results" / config.run_id / "links.csv")
        up, down = links[links["exchange"] == 0], links[links["exchange"] == 1]
        keep = dict(config.algorithm.hyperparameters)["keep_ratio"]
        # payload_bytes is the mean over the 5 nodes: 4 devices upload, then the server alone sends down
        assert (up["payload_bytes"] == round(4 * encoded_bytes(keep_count(dim, keep), dim) / 5)).all()
        assert (down["payload_bytes"] == round(4 * dim / 5)).all()
        assert (up["delivered_pairs"] == 4).all() and (down["delivered_pairs"] == 4).all()
    dense = runs[runs["algorithm.keep_ratio"] == 1.0]
    assert len(runs) == 4 and np.allclose(dense["mb_up"], 4 * dense["mb_down"])  # 4 uploads, one broadcast down
    text = esgd_table.render(runs, 0.5)
    assert "| ideal | eSGD 100 % |" in text and "| ideal | DGC 25 % |" in text
    assert "± n/a" in text and "± 0.000" not in text  # one seed: no spread is claimed


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
