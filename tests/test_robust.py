"""Byzantine attacks and robust aggregation: each rule against a hand-computed case and a plain per-device loop
written from its paper (1e-6), including what it does when fewer messages arrive than it needs; each attack
against its formula; the robust rules stay in the honest inputs' hull without attackers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from learner import byzantine, robust
from learner.algorithms.registry import build_algorithm


def loop_inputs(x: torch.Tensor, sent: torch.Tensor, mask: torch.Tensor, j: int) -> list[torch.Tensor]:
    """Device j's own model, then every message it received (ascending sender), as a plain list."""
    return [x[j]] + [sent[i] for i in range(len(x)) if i != j and mask[i, j]]


def trimmed_by_loop(values: list[torch.Tensor], trim: int) -> torch.Tensor:
    m = len(values)
    b = min(trim, (m - 1) // 2)
    stacked = torch.stack(values).double()
    out = torch.empty(stacked.shape[1], dtype=torch.float64)
    for k in range(stacked.shape[1]):
        ordered = sorted(stacked[:, k].tolist())
        out[k] = sum(ordered[b:m - b]) / (m - 2 * b)
    return out


def median_by_loop(values: list[torch.Tensor]) -> torch.Tensor:
    stacked = torch.stack(values).double()
    return torch.tensor([float(np.median(stacked[:, k].numpy())) for k in range(stacked.shape[1])], dtype=torch.float64)


def krum_by_loop(values: list[torch.Tensor], f: int, select: int) -> torch.Tensor:
    m = len(values)
    if m <= 2 * f + 2:
        return values[0].double()
    scores = []
    for a in range(m):
        distances = sorted(float((values[a] - values[c]).double().pow(2).sum()) for c in range(m) if c != a)
        scores.append(sum(distances[:m - f - 2]))
    best = sorted(range(m), key=lambda a: (scores[a], a))[:select]
    return torch.stack([values[a].double() for a in best]).mean(0)


def bridge_by_loop(values: list[torch.Tensor], trim: int) -> torch.Tensor:
    stacked = torch.stack(values).double()
    out = torch.empty(stacked.shape[1], dtype=torch.float64)
    for k in range(stacked.shape[1]):
        own, others = float(stacked[0, k]), [float(v) for v in stacked[1:, k]]
        above = sorted((v for v in others if v > own), reverse=True)[trim:]
        below = sorted(v for v in others if v < own)[trim:]
        equal = [v for v in others if v == own]
        kept = [own, *above, *below, *equal]
        out[k] = sum(kept) / len(kept)
    return out


def clipped_by_loop(half: torch.Tensor, sent: torch.Tensor, weights: torch.Tensor, j: int, b: int,
                    radius: float) -> torch.Tensor:
    n = len(half)
    neighbours = [i for i in range(n) if i != j and weights[i, j] > 0]
    distances = [float((sent[i] - half[j]).double().norm()) for i in neighbours]
    if radius > 0:
        tau = radius
    else:
        tau = sorted(distances, reverse=True)[b] if len(neighbours) > b else 0.0
    out = half[j].double().clone()
    for i, distance in zip(neighbours, distances):
        z = (sent[i] - half[j]).double()
        out += float(weights[i, j]) * z * (min(1.0, tau / distance) if distance > 0 else 1.0)
    return out


def random_round(seed: int, n: int = 7, d: int = 5, loss: float = 0.4):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    sent = x + torch.randn(n, d, generator=generator, dtype=torch.float64) * (torch.rand(n, 1, generator=generator) < 0.3)
    mask = torch.rand(n, n, generator=generator) >= loss
    mask[torch.arange(n), torch.arange(n)] = True
    return x, sent, mask


def test_trimmed_mean_and_median_by_hand():
    """Device 0 holds 0 and receives 10, -4, 2, 100 (coordinate 0): sorted -4, 0, 2, 10, 100."""
    x = torch.tensor([[0.0], [10.0], [-4.0], [2.0], [100.0]], dtype=torch.float64)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[1:, 0] = True
    values, valid = robust.candidates(x, x, mask)
    assert robust.trimmed_mean(values, valid, 1)[0].item() == pytest.approx((0 + 2 + 10) / 3)
    assert robust.trimmed_mean(values, valid, 2)[0].item() == pytest.approx(2.0)
    assert robust.trimmed_mean(values, valid, 3)[0].item() == pytest.approx(2.0)  # 5 values: at most 2 a side
    assert robust.coordinate_median(values, valid)[0].item() == pytest.approx(2.0)
    assert robust.trimmed_mean(values, valid, 1)[1].item() == 10.0  # device 1 heard nobody: its own value
    mask[4, 0] = False  # four values -4, 0, 2, 10: the median is the middle pair's mean, one trimmed a side
    values, valid = robust.candidates(x, x, mask)
    assert robust.coordinate_median(values, valid)[0].item() == pytest.approx(1.0)
    assert robust.trimmed_mean(values, valid, 2)[0].item() == pytest.approx(1.0)  # 4 < 2b + 1: one a side


def test_krum_and_bridge_by_hand():
    """Krum, f = 0, over 0 (own), 1, 2, 10: scores (m - f - 2 = 2 nearest): 1 + 4, 1 + 1, 1 + 4, 64 + 81; Krum
    picks 1, multi-Krum of 3 the mean of 1, 0, 2; with f = 1, m = 4 <= 2f + 2, the device keeps its own 0.
    BRIDGE, b = 1, own 3 among 0, 1, 5, 9: drops 9 (largest above) and 0 (smallest below), keeps 3, 1, 5."""
    values = torch.tensor([[[0.0], [1.0], [2.0], [10.0]]], dtype=torch.float64)
    valid = torch.ones(1, 4, dtype=torch.bool)
    assert robust.krum(values, valid, 0, 1)[0].item() == 1.0
    assert robust.krum(values, valid, 0, 3)[0].item() == pytest.approx(1.0)
    assert robust.krum(values, valid, 0, 2)[0].item() == pytest.approx(0.5)  # 1, then 0 (tie with 2: lower first)
    assert robust.krum(values, valid, 1, 1)[0].item() == 0.0  # too few values for f = 1: its own
    own_first = torch.tensor([[[3.0], [0.0], [1.0], [5.0], [9.0]]], dtype=torch.float64)
    assert robust.bridge_screen(own_first, torch.ones(1, 5, dtype=torch.bool), 1)[0].item() == pytest.approx(3.0)
    assert robust.bridge_screen(own_first, torch.ones(1, 5, dtype=torch.bool), 3)[0].item() == pytest.approx(3.0)


def test_clipped_gossip_by_hand():
    """Own 0; neighbours at 3 (weight 1/4) and 4 (weight 1/4), b = 1: tau = 3, so the 4 is clipped to 3:
    0 + 3/4 + 3/4 = 1.5; with a fixed radius 1: 0 + 1/4 + 1/4."""
    half = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    weights = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.75, 0.0], [0.25, 0.0, 0.75]], dtype=torch.float64)
    out = robust.clipped_gossip(half, half, weights, 1, 0.0)
    assert out[0].tolist() == pytest.approx([0.75, 0.75])
    assert robust.clipped_gossip(half, half, weights, 1, 1.0)[0].tolist() == pytest.approx([0.25, 0.25])
    assert robust.clipped_gossip(half, half, weights, 1, 0.0)[1].tolist() == pytest.approx([3.0, 0.0])  # 1 neighbour


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("loss", [0.0, 0.4, 0.8])
def test_each_rule_equals_its_per_device_loop(seed, loss):
    x, sent, mask = random_round(seed, loss=loss)
    values, valid = robust.candidates(x, sent, mask)
    weights = torch.rand(len(x), len(x), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) \
        * (mask & mask.T)
    for j in range(len(x)):
        inputs = loop_inputs(x, sent, mask, j)
        for trim in (0, 1, 2, 4):
            assert torch.allclose(robust.trimmed_mean(values, valid, trim)[j], trimmed_by_loop(inputs, trim), atol=1e-6)
            assert torch.allclose(robust.bridge_screen(values, valid, trim)[j], bridge_by_loop(inputs, trim), atol=1e-6)
        assert torch.allclose(robust.coordinate_median(values, valid)[j], median_by_loop(inputs), atol=1e-6)
        for f, select in ((0, 1), (1, 1), (1, 3), (2, 2)):
            assert torch.allclose(robust.krum(values, valid, f, select)[j], krum_by_loop(inputs, f, select), atol=1e-6)
        for b, radius in ((0, 0.0), (1, 0.0), (2, 0.0), (1, 0.7)):
            assert torch.allclose(robust.clipped_gossip(x, sent, weights, b, radius)[j],
                                  clipped_by_loop(x, sent, weights, j, b, radius), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.9))
def test_without_attackers_every_rule_stays_in_the_honest_hull(seed, loss):
    """No Byzantine device, any losses: each coordinate of trimmed mean, median, Krum and BRIDGE lies between
    the smallest and largest of the device's own and received values; ClippedGossip with weights of a
    stochastic column stays in the hull of the received and own models (a convex combination)."""
    from learner.mixing import metropolis_hastings

    x, _, mask = random_round(seed, loss=loss)
    values, valid = robust.candidates(x, x, mask)
    low = torch.where(valid[:, :, None], values, torch.inf).min(1).values
    high = torch.where(valid[:, :, None], values, -torch.inf).max(1).values
    for out in (robust.trimmed_mean(values, valid, 1), robust.coordinate_median(values, valid),
                robust.krum(values, valid, 1, 2), robust.bridge_screen(values, valid, 1)):
        assert (out >= low - 1e-9).all() and (out <= high + 1e-9).all()
    gossip = robust.clipped_gossip(x, x, metropolis_hastings(mask, x.dtype), 1, 0.0)
    assert (gossip >= low - 1e-9).all() and (gossip <= high + 1e-9).all()


def test_attacks_forge_only_the_byzantine_rows_by_their_formulas():
    """Devices 0-3 honest, 4 Byzantine, which heard 0, 1 and 2 (not 3)."""
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0], [100.0, 100.0], [7.0, 7.0]], dtype=torch.float64)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[[0, 1, 2], 4] = True
    bad = torch.tensor([False, False, False, False, True])
    generator = torch.Generator().manual_seed(0)
    mean = torch.tensor([3.0, 4.0], dtype=torch.float64)
    std = torch.tensor([math.sqrt(8 / 3), math.sqrt(8.0)], dtype=torch.float64)  # ddof 0 over 1, 3, 5 and 2, 2, 8
    assert torch.equal(byzantine.negation(x, mask, bad, 0.0, generator)[4], -x[4])
    assert torch.allclose(byzantine.ipm(x, mask, bad, 0.0, generator)[4], -0.1 * mean)
    assert torch.allclose(byzantine.alie(x, mask, bad, 1.5, generator)[4], mean - 1.5 * std)
    z = byzantine.alie_z(5, 1)  # s = floor(3.5) - 1 = 2: Phi^-1(3 / 5)
    assert z == pytest.approx(0.2533471, abs=1e-6)
    assert torch.allclose(byzantine.alie(x, mask, bad, 0.0, generator)[4], mean - z * std)
    # dissensus: the target is device 0 (the heard honest device after 4, cyclically); h = 3 heard, f = 1
    assert torch.allclose(byzantine.dissensus(x, mask, bad, 0.0, generator)[4], x[0] - 3 * (mean - x[0]))
    assert torch.allclose(byzantine.dissensus(x, mask, bad, 0.5, generator)[4], x[0] - 1.5 * (mean - x[0]))
    for attack in byzantine.MESSAGE_ATTACKS.values():
        assert torch.equal(attack(x, mask, bad, 0.0, generator)[:4], x[:4])
    deaf = torch.zeros(5, 5, dtype=torch.bool)  # heard nobody: nothing to forge from
    assert torch.equal(byzantine.alie(x, deaf, bad, 0.0, generator)[4], x[4])


@pytest.mark.parametrize("strength, factor", [(0.0, -1.0), (4.0, -4.0)])
def test_sign_flip_negates_and_scales_the_attackers_gradients_only(strength, factor):
    """The same data, seed and parameters: an attacker's gradient is -s times the honest device's it would have
    been (s = 1 by default), every other row is unchanged, on the synchronous and the keyed draws."""
    from learner.data import load_dataset, partition
    from learner.devices import Devices
    from learner.models import build_model

    data = load_dataset("digits", 0.2, seed=3)
    shards = partition(data.y_train, 4, "dirichlet", 1.0, 0.0, seed=3)
    model = build_model("logreg", data.num_features, data.num_classes)
    params = model.init(4, seed=1)
    bad = torch.tensor([False, True, False, True])
    honest = Devices(model, data, shards, batch_size=8, seed=3)
    flipped = byzantine.SignFlippingDevices(model, data, shards, 8, 3, byzantine=bad, strength=strength)
    expected, expected_loss = honest.gradients(params)
    got, loss = flipped.gradients(params)
    assert torch.equal(got[~bad], expected[~bad]) and torch.allclose(got[bad], factor * expected[bad])
    assert torch.equal(loss, expected_loss)
    counts, some = np.array([2, 0]), np.array([3, 2])
    expected = honest.keyed_gradients(params[some], counts, some)[0]
    got = flipped.keyed_gradients(params[some], counts, some)[0]
    assert torch.allclose(got[0], factor * expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("seed", range(6))
def test_dissensus_equals_a_per_attacker_loop_and_cancels_the_honest_pull_on_its_target(seed):
    """Per attacker, written out: its target is the first honest device it heard after its own index
    (cyclically), its message x_t - eps (h / f) (mu - x_t). On the complete graph with equal weights, the
    attackers' messages then cancel the honest neighbours' pull on a target they share (eps = 1)."""
    generator = torch.Generator().manual_seed(seed)
    n, d = 9, 4
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    mask = torch.rand(n, n, generator=generator) < 0.6
    bad = torch.zeros(n, dtype=torch.bool)
    bad[torch.randperm(n, generator=generator)[:3]] = True
    got = byzantine.dissensus(x, mask, bad, 0.7, None)
    for b in range(n):
        heard = [i for i in range(n) if mask[i, b] and not bad[i] and i != b]
        if not bad[b] or not heard:
            assert torch.equal(got[b], x[b])
            continue
        target = min(heard, key=lambda i: (i - b) % n)
        mu = x[heard].mean(0)
        assert torch.allclose(got[b], x[target] - 0.7 * len(heard) / 3 * (mu - x[target]))
    full = torch.ones(n, n, dtype=torch.bool)
    bad = torch.tensor([False] * 6 + [True] * 3)  # every attacker's target: device 0
    sent = byzantine.dissensus(x, full, bad, 0.0, None)
    honest_pull = (x[1:6] - x[0]).sum(0)  # target 0's honest neighbours, equal weights
    attack_pull = (sent[6:] - x[0]).sum(0)
    assert torch.allclose(honest_pull + attack_pull, torch.zeros(d, dtype=torch.float64), atol=1e-12)


def test_placement_and_label_flipping():
    chosen = byzantine.byzantine_devices(20, 0.2, (), "random", seed=3)
    assert chosen.sum() == 4 and np.array_equal(chosen, byzantine.byzantine_devices(20, 0.2, (), "random", seed=3))
    assert not np.array_equal(chosen, byzantine.byzantine_devices(20, 0.2, (), "random", seed=4))
    degree = np.array([1, 5, 5, 2, 9])
    assert np.flatnonzero(byzantine.byzantine_devices(5, 0.4, (), "degree", 0, degree)).tolist() == [1, 4]
    assert np.flatnonzero(byzantine.byzantine_devices(5, 0.0, (2, 3), "random", 0)).tolist() == [2, 3]
    assert byzantine.flip_labels(np.array([0, 3, 9]), 10).tolist() == [9, 6, 0]


@pytest.mark.parametrize("name", ["trimmed_mean", "median", "krum", "bridge", "clipped_gossip", "dpsgd"])
def test_a_robust_step_uses_what_the_links_say_was_carried(name):
    """One round through the algorithm's step: the Byzantine rows it mixes are the carried (forged) ones, and
    with honest links it equals its rule on the models themselves."""
    from learner.algorithms.base import DeclaredLinks, model_message

    x, _, mask = random_round(1, n=6, d=4, loss=0.2)
    algorithm = build_algorithm(name)  # the gradients below are zero: only the mixing moves the models

    class Raw:
        def exchange(self, sizes):
            return mask

    honest, _ = algorithm.step(x, algorithm.init(x), lambda p: torch.zeros_like(p),
                               DeclaredLinks(Raw(), model_message(4), 6))
    bad = torch.tensor([False] * 5 + [True])
    attacked, _ = algorithm.step(x, algorithm.init(x), lambda p: torch.zeros_like(p),
                                 DeclaredLinks(Raw(), model_message(4), 6,
                                               lambda v, m: byzantine.negation(v, m, bad, 100.0, None)))
    heard_attacker = mask[5].clone()
    heard_attacker[5] = False
    changed = (attacked - honest).abs().amax(1) > 1e-9
    assert changed[heard_attacker].any() and not changed[~heard_attacker & ~bad].any()


@pytest.mark.parametrize("aggregation, expected", [("mean", 22.0), ("median", 3.0), ("trimmed_mean", 3.0)])
def test_fedavgs_server_rule_by_hand(aggregation, expected):
    """Five uploads 1, 2, 3, 4, 100 (equal sample counts) reach the server: the mean 22, the median 3, the
    trimmed mean (one a side) mean(2, 3, 4) = 3; every device gets the result back."""
    from learner.algorithms.base import DeclaredLinks

    x = torch.tensor([[1.0], [2.0], [3.0], [4.0], [100.0]])
    algorithm = build_algorithm("fedavg", local_steps=1, aggregation=aggregation, trim=1)

    class Raw:
        def exchange(self, sizes):
            return torch.ones(6, 6, dtype=torch.bool)

    state = algorithm.init(x)
    out, state = algorithm.step(x, state, lambda p: torch.zeros_like(p),
                                DeclaredLinks(Raw(), algorithm.messages(1), 5))
    assert out[:, 0].tolist() == pytest.approx([expected] * 5)
    with pytest.raises(ValueError, match="aggregation"):
        build_algorithm("fedavg", aggregation="krum")


def test_the_robust_reading_is_computed_from_its_table():
    """A synthetic per-seed table: D-PSGD falls from 0.80 to 0.30 under sign flip at 0.2, the trimmed mean
    from 0.70 to 0.66; the reading names the trimmed mean highest under attack and quotes both drops as the
    paired means with their t intervals."""
    import pandas as pd
    from scipy.stats import t as student

    from experiments.campaigns.robust_table import render

    rows = []
    finals = {("dpsgd", 0.0): [0.80, 0.81, 0.79, 0.80, 0.82], ("dpsgd", 0.2): [0.30, 0.35, 0.28, 0.31, 0.33],
              ("trimmed_mean", 0.0): [0.70, 0.71, 0.69, 0.72, 0.70], ("trimmed_mean", 0.2): [0.66, 0.67, 0.65, 0.69, 0.64]}
    for (name, fraction), values in finals.items():
        for rate in (0.1, 1.0, 10.0):
            if fraction == 0.0:
                rows.append({"sweep": "r-tune", "run_id": f"{name}-{rate}", "algorithm.name": name, "algorithm.lr": rate,
                             "network.link_model": "ideal", "rounds": 60, "seed": 0, "status": "done",
                             "final_acc": 0.7, "conv_rounds": 20.0 if rate == 1.0 else 30.0})
        for seed, value in enumerate(values, start=1):
            rows.append({"sweep": "r-table", "run_id": f"{name}-{fraction}-{seed}", "algorithm.name": name,
                         "algorithm.lr": 1.0, "network.link_model": "ideal", "byzantine.fraction": fraction or math.nan,
                         "byzantine.attack": "sign_flip" if fraction else math.nan, "network.jammer_duty_cycle": 0.0,
                         "rounds": 60, "seed": seed, "status": "done", "final_acc": value, "conv_rounds": math.nan,
                         "time_to_target_s": math.nan, "energy_to_target_j": math.nan})
    text = render(pd.DataFrame(rows), 0.6)
    reading = text.split("**ideal, sign_flip at 0.2.**")[1].split("\n")[0]
    assert "Highest honest final accuracy: trimmed mean 0.662 ±" in reading
    drop = np.subtract(finals[("dpsgd", 0.2)], finals[("dpsgd", 0.0)])
    half = student.ppf(0.975, 4) * drop.std(ddof=1) / math.sqrt(5)
    assert f"D-PSGD (mean) {drop.mean():.3f} ± {half:.3f} accuracy (5 pairs, Holm p" in reading
    assert "separated" in reading
