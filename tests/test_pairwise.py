"""Pairwise exchanges as published (AD-PSGD): requests to one drawn neighbour and their replies, over random
message logs with 0/30/60 % loss, over a control's and over real ns-3's message core, against a plain per-event
loop written from the paper; the halves of an exchange happen only where their messages arrived, and a
lossless run keeps the devices' mean."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from learner.algorithms.adpsgd import ADPSGD
from learner.algorithms.swarm_sgd import SwarmSGDAsync
from messages.draws import local_step_counts
from learner.pairwise import run_pairwise
from messages.log import MessageLog

DIM = 3
PAIRWISE = {"adpsgd", "swarm_sgd"}  # the registered pairwise algorithms, held to ``reference_exchanges`` below
ONE_PEER = {"gossip_learning"}  # those sending to one peer, held to ``reference_push``


def random_pairwise_log(seed: int, n: int = 6, steps: int = 7, loss: float = 0.3, requests_until: int | None = None,
                        horizon: bool = True, stragglers: bool = True) -> MessageLog:
    """Each device's steps end at cumulative compute times (two devices 4x slower with ``stragglers``); its k-th
    request goes to a random other device (none from step ``requests_until`` on), arriving 0.05-0.6 s after it
    left, or lost with probability ``loss``; the partner takes it unless it has taken its last step and
    replies at once, the reply arriving 0.05-0.6 s later or lost likewise."""
    rng = np.random.default_rng(seed)
    compute = rng.uniform(0.2, 0.4, n) * np.where(np.arange(n) < (2 if stragglers else 0), 4.0, 1.0)
    step_s = np.cumsum(compute[None, :] + rng.uniform(0, 0.01, (steps, n)), axis=0)
    partner = (np.arange(n)[None, :] + rng.integers(1, n, (steps, n))) % n
    if requests_until is not None:
        partner[requests_until:] = -1
    arrival_s, reply_s = np.full((steps, n, n), np.nan), np.full((steps, n), np.nan)
    answered = np.zeros((steps, n), dtype=bool)
    for k, i in zip(*np.nonzero(partner >= 0)):
        j = partner[k, i]
        if rng.random() >= loss:
            arrival_s[k, i, j] = step_s[k, i] + rng.uniform(0.05, 0.6)
            answered[k, i] = arrival_s[k, i, j] < step_s[-1, j]
            if answered[k, i] and rng.random() >= loss:
                reply_s[k, i] = arrival_s[k, i, j] + rng.uniform(0.05, 0.6)
    log = MessageLog(step_s, arrival_s, partner, answered, reply_s)
    return log.within(float(np.median(step_s[-1]))) if horizon else log


def quadratic(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, generator=gen, dtype=torch.float64) + 0.5
    b = torch.randn(n, DIM, generator=gen, dtype=torch.float64)
    return lambda x: a * (x - b), (lambda i, xi: a[i] * (xi - b[i]))


def reference_exchanges(algorithm, log: MessageLog, x0: torch.Tensor, device_grad, eval_s: np.ndarray,
                        counts: np.ndarray | None = None):
    """The paper's loop per event, one at a time in time order (at equal times: requests, replies, step ends;
    then by device), up to the last evaluation time: at device j's step end its request leaves with its
    model, then its local steps' update from its read copy is added; a request j takes: its reply carries
    its model, then it averages with the request's model; a reply to j's request k: it adds half of (the
    reply's model - what the request carried), if its request was taken in time. ``counts`` (K, N): the
    local steps before each request where the algorithm draws them (SwarmSGD), else its ``local_steps``.
    Returns (models at eval_s, halves used as (receiver, sender, sent at, merged at))."""
    by_event = algorithm.reference()
    n, steps = x0.shape[0], log.step_end_s.shape[0]
    events = [(float(log.step_end_s[k, j]), 2, j, k, -1) for k in range(steps) for j in range(n)
              if not math.isnan(log.step_end_s[k, j])]
    for k in range(steps):
        for i in range(n):
            if log.answered[k, i]:
                j = int(log.partner[k, i])
                events.append((float(log.arrival_s[k, i, j]), 0, j, k, i))
                if not math.isnan(log.reply_s[k, i]):
                    events.append((float(log.reply_s[k, i]), 1, i, k, j))
    x = [x0[i].clone() for i in range(n)]
    read = [x0[i].clone() for i in range(n)]
    request, reply, used = {}, {}, []
    snapshots = x0[None].repeat(len(eval_s), 1, 1)
    for t, kind, j, k, peer in sorted(events, key=lambda event: event[:3]):
        if t > eval_s[-1]:
            break
        if kind == 2:
            request[(k, j)] = x[j].clone()
            moved = read[j].clone()
            for _ in range(algorithm.local_steps if counts is None else int(counts[k, j])):
                moved = moved - algorithm.lr * device_grad(j, moved)
            x[j] = x[j] + (moved - read[j])
            read[j] = x[j].clone()
        elif kind == 0:
            reply[(k, peer)] = x[j].clone()
            x[j], _, taken = by_event.merge(x[j], {}, [(peer, (request[(k, peer)], None))], 0.0)
            used += [(j, peer, float(log.step_end_s[k, peer]), t)] * len(taken)
        elif (k, j) in reply:
            x[j], _, taken = by_event.merge(x[j], {}, [(peer, (reply[(k, j)], request[(k, j)]))], 0.0)
            used += [(j, peer, float(log.arrival_s[k, j, peer]), t)] * len(taken)
        snapshots[torch.from_numpy(eval_s >= t), j] = x[j]
    return snapshots, sorted(used)


def halves(merges) -> list[tuple]:
    """The engine's merges as (receiver, sender, sent at, merged at)."""
    return sorted(zip(merges.receiver.tolist(), merges.sender.tolist(), merges.sent_s.tolist(),
                      merges.merged_s.tolist()))


def test_every_registered_pairwise_algorithm_is_held_to_the_per_event_loop():
    from learner.algorithms.registry import ALGORITHMS
    peers = {name: getattr(cls, "peers", "neighbours") for name, cls in ALGORITHMS.items()}
    assert {name for name, kind in peers.items() if kind == "pairwise"} == PAIRWISE == set(ENGINES)
    assert {name for name, kind in peers.items() if kind == "one"} == ONE_PEER


ENGINES = {"adpsgd": ADPSGD(lr=0.2), "swarm_sgd": SwarmSGDAsync(lr=0.2, local_steps=3)}


@pytest.mark.parametrize("name", sorted(ENGINES))
@pytest.mark.parametrize("log_seed,loss", [(1, 0.0), (2, 0.3), (3, 0.6)])
def test_the_batched_engine_equals_a_per_event_loop_of_requests_and_replies(name, log_seed, loss):
    algorithm = ENGINES[name]
    log = random_pairwise_log(log_seed, loss=loss)
    counts = local_step_counts(11, *log.step_end_s.shape, algorithm.local_steps)
    if name == "swarm_sgd":
        assert len(set(counts.ravel().tolist())) > 2  # the counts do vary
    grad, device_grad = quadratic(log.step_end_s.shape[1], seed=log_seed)
    x0 = torch.randn(log.step_end_s.shape[1], DIM, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    eval_s = np.linspace(0.1, float(np.nanmax(log.step_end_s)) + 0.5, 9)
    stepped = np.zeros(log.step_end_s.shape[1], dtype=np.int64)
    result = run_pairwise(algorithm, x0.clone(), algorithm.init(x0, seed=11), grad, log, eval_s,
                          before_level=lambda level: np.add.at(stepped, np.flatnonzero(level.step >= 0), 1),
                          local_steps=counts)
    ran = np.where(np.isnan(log.step_end_s), 0, counts if name == "swarm_sgd" else algorithm.local_steps)
    if name == "swarm_sgd":  # one before_level per local step: the oracle's counts follow the draws
        assert stepped.tolist() == ran.sum(axis=0).tolist()
    expected, used = reference_exchanges(algorithm, log, x0, device_grad, eval_s,
                                         counts if name == "swarm_sgd" else None)
    torch.testing.assert_close(result.snapshots, expected, atol=1e-6, rtol=0)
    assert halves(result.used) == used and len(used) > 0
    events = int((~np.isnan(log.step_end_s)).sum()) + len(used)
    assert result.levels < events  # batched


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), loss=st.floats(0.0, 0.9), n=st.integers(2, 7), steps=st.integers(1, 8))
def test_each_half_of_an_exchange_happens_only_where_its_messages_arrived(seed, loss, n, steps):
    """A partner's half needs the request it took; a requester's half the request and the reply; a lost reply
    leaves only the partner's half (the one-sided rule), a lost request neither; each half once, when its
    message arrives."""
    log = random_pairwise_log(seed, n=n, steps=steps, loss=loss)
    until = float(np.nanmax(log.step_end_s, initial=0.0)) + 10.0
    x0 = torch.zeros(n, DIM, dtype=torch.float64)
    result = run_pairwise(ADPSGD(lr=0.1), x0, 0, lambda x: torch.zeros_like(x), log, np.array([until]))
    seen = halves(result.used)
    assert len(set(seen)) == len(seen)
    expected = []
    for k, i in zip(*np.nonzero(log.partner >= 0)):
        j = int(log.partner[k, i])
        request, reply = log.arrival_s[k, i, j], log.reply_s[k, i]
        if math.isnan(request):
            assert not log.answered[k, i] and math.isnan(reply)  # a lost request is not taken nor answered
        if log.answered[k, i]:
            expected.append((j, int(i), float(log.step_end_s[k, i]), float(request)))  # the partner's half
            if not math.isnan(reply):
                expected.append((int(i), j, float(request), float(reply)))  # the requester's half
    assert seen == sorted(expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_lossless_run_keeps_the_devices_mean(seed):
    """No gradient and no loss: the halves of each exchange sum to zero, so the mean of the models is the
    initial mean (1e-6) while the models move together (they do average)."""
    log = random_pairwise_log(seed, n=6, steps=10, loss=0.0, horizon=False)
    x0 = torch.randn(6, DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    result = run_pairwise(ADPSGD(lr=0.1), x0.clone(), 0, lambda x: torch.zeros_like(x), log,
                          np.array([float(np.nanmax(log.reply_s)) + 1.0]))
    final = result.snapshots[-1]
    assert len(result.used) == 2 * int(log.answered.sum()) > 20  # every exchange whole
    torch.testing.assert_close(final.mean(0), x0.mean(0), atol=1e-6, rtol=0)
    assert (final.var(0) < x0.var(0) / 2).all()


def random_push_log(seed: int, n: int = 6, steps: int = 7, loss: float = 0.3) -> MessageLog:
    """As ``random_pairwise_log``, each message to one random other device, nothing back."""
    rng = np.random.default_rng(seed)
    compute = rng.uniform(0.2, 0.4, n) * np.where(np.arange(n) < 2, 4.0, 1.0)
    step_s = np.cumsum(compute[None, :] + rng.uniform(0, 0.01, (steps, n)), axis=0)
    partner = (np.arange(n)[None, :] + rng.integers(1, n, (steps, n))) % n
    arrival_s = np.full((steps, n, n), np.nan)
    for k, i in zip(*np.nonzero(partner >= 0)):
        if rng.random() >= loss:
            arrival_s[k, i, partner[k, i]] = step_s[k, i] + rng.uniform(0.05, 0.6)
    return MessageLog(step_s, arrival_s, partner).within(float(np.median(step_s[-1])))


def reference_push(algorithm, log: MessageLog, x0: torch.Tensor, device_grad, eval_s: np.ndarray):
    """Gossip learning's node per event, from the paper, in time order (receipts before sends at equal times,
    then by device), up to the last evaluation time: at each step end it sends (x, a) to its drawn peer; on a
    receipt of (x_r, a_r): x <- (a x + a_r x_r) / (a + a_r) (equal weights while both ages are 0),
    a <- max(a, a_r), then ``local_steps`` updates x <- x - lr g(x), a <- a + 1 each. Returns (models at
    eval_s, merges as (receiver, sender, sent at, merged at))."""
    n, steps = x0.shape[0], log.step_end_s.shape[0]
    events = [(float(log.step_end_s[k, i]), 1, i, k, -1) for k in range(steps) for i in range(n)
              if not math.isnan(log.step_end_s[k, i])]
    events += [(float(log.arrival_s[k, i, j]), 0, int(j), k, i) for k in range(steps) for i in range(n)
               for j in [log.partner[k, i]] if j >= 0 and not math.isnan(log.arrival_s[k, i, j])]
    x, age = [x0[i].clone() for i in range(n)], [0.0] * n
    sent, merges = {}, []
    snapshots = x0[None].repeat(len(eval_s), 1, 1)
    for t, kind, j, k, sender in sorted(events, key=lambda event: event[:3]):
        if t > eval_s[-1]:
            break
        if kind == 1:
            sent[(k, j)] = (x[j].clone(), age[j])
            continue
        model, their_age = sent[(k, sender)]
        mine = age[j] / (age[j] + their_age) if age[j] + their_age > 0 else 0.5
        x[j], age[j] = mine * x[j] + (1 - mine) * model, max(age[j], their_age)
        for _ in range(algorithm.local_steps):
            x[j], age[j] = x[j] - algorithm.lr * device_grad(j, x[j]), age[j] + 1
        merges.append((j, sender, float(log.step_end_s[k, sender]), t))
        snapshots[torch.from_numpy(eval_s >= t), j] = x[j]
    return snapshots, sorted(merges)


@pytest.mark.parametrize("log_seed,loss", [(1, 0.0), (2, 0.3), (3, 0.6)])
def test_gossip_learning_as_published_follows_its_per_event_loop(log_seed, loss):
    """One message to one peer, merged and learned from on receipt (1e-6), the oracle told of each receiver,
    and only received messages merged."""
    from learner.algorithms.gossip_learning import GossipLearning
    from learner.pairwise import run_push

    algorithm = GossipLearning(lr=0.2, local_steps=2)
    log = random_push_log(log_seed, loss=loss)
    grad, device_grad = quadratic(log.step_end_s.shape[1], seed=log_seed)
    x0 = torch.randn(log.step_end_s.shape[1], DIM, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    eval_s = np.linspace(0.1, float(np.nanmax(log.step_end_s)) + 0.5, 9)
    updates = np.zeros(log.step_end_s.shape[1], dtype=np.int64)
    result = run_push(algorithm, x0.clone(), algorithm.init(x0), grad, log, eval_s,
                      before_level=lambda level: np.add.at(updates, np.flatnonzero(level.step >= 0), 1))
    expected, merges = reference_push(algorithm, log, x0, device_grad, eval_s)
    torch.testing.assert_close(result.snapshots, expected, atol=1e-6, rtol=0)
    assert halves(result.used) == merges and len(merges) > 0
    assert updates.tolist() == np.bincount([m[0] for m in merges], minlength=len(updates)).tolist()
    for receiver, sender, _, merged_s in merges:  # each merge a received message, from the receiver's peer
        assert any(log.partner[k, sender] == receiver and log.arrival_s[k, sender, receiver] == merged_s
                   for k in range(log.step_end_s.shape[0]))


RUN = """name = "pairwise"
seed = 1
rounds = {rounds}
devices = {devices}
[data]
dataset = "digits"
[algorithm]
name = {algorithm}
[network]
link_model = "ns3"
density = 0.5
schedule = "async"
compute_s_per_step = 0.05
async_period_s = 0.3
"""


@pytest.mark.ns3
def test_over_real_ns3_the_engine_follows_the_per_event_loop_and_unicast_delivers_more_than_broadcast(tmp_path):
    """16 devices over ns-3 802.11a, AD-PSGD as published (unicast requests and replies, acknowledged, with
    the MAC's retries) and its broadcast reading on the same placement (one seed): every request and reply
    appears in links.csv as exchanges 0 and 1, with the MAC's retransmissions (none for broadcast); the
    unicast requests' delivery rate is above the broadcast messages', and gossip learning's one-peer unicasts'
    too; and the batched engine equals the per-event loop over this real log (1e-6)."""
    import pandas as pd

    from bridge.trace import LinkTrace
    from experiments.cli import main
    from experiments.run.async_loop import message_log
    from helpers import run_dirs

    path = tmp_path / "sweep.toml"
    path.write_text(RUN.format(rounds=3, devices=16, algorithm='["adpsgd", "adpsgd_broadcast", "gossip_learning"]'))
    assert main(["sweep", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "-q"]) == 0
    rates = {}
    for run_dir in [d for d in run_dirs(tmp_path / "r") if (d / "links.csv").exists()]:
        links = pd.read_csv(run_dir / "links.csv")
        name = run_dir.name.rsplit("-", 1)[0]
        sums = links.groupby("exchange")[["intended_pairs", "delivered_pairs", "mac_retries"]].sum()
        rates[name] = float(sums.loc[0, "delivered_pairs"] / sums.loc[0, "intended_pairs"])
        assert list(sums.index) == ([0, 1] if name == "adpsgd" else [0])
        if name == "adpsgd":  # acknowledged unicast: the MAC sent some frames again
            assert sums.loc[1, "delivered_pairs"] > 0 and sums.loc[0, "mac_retries"] > 0
        elif name == "adpsgd_broadcast":  # a broadcast frame is never acknowledged, so never sent again
            assert sums.loc[0, "mac_retries"] == 0
        else:  # gossip learning: one unicast message per loop to one peer
            rows = links[links.exchange == 0]
            assert (rows["intended_pairs"] <= 16).all() and (rows["intended_pairs"] > 0).all()
    assert rates["gossip_learning"] > rates["adpsgd_broadcast"], rates
    assert set(rates) == {"adpsgd", "adpsgd_broadcast", "gossip_learning"}
    assert rates["adpsgd"] > rates["adpsgd_broadcast"], rates
    traces = [LinkTrace.load(meta.parent) for meta in (tmp_path / "c").rglob("meta.json")]
    (trace,) = [t for t in traces if t.meta.get("barrier", {}).get("peers") == "pairwise"]
    log = message_log(trace)
    assert log.answered.any() and np.isfinite(log.reply_s).any()
    n = log.step_end_s.shape[1]
    grad, device_grad = quadratic(n, seed=5)
    x0 = torch.randn(n, DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eval_s = np.linspace(0.5, float(np.nanmax(log.step_end_s)), 7)
    algorithm = ADPSGD(lr=0.2)
    result = run_pairwise(algorithm, x0.clone(), 0, grad, log, eval_s)
    expected, used = reference_exchanges(algorithm, log, x0, device_grad, eval_s)
    torch.testing.assert_close(result.snapshots, expected, atol=1e-6, rtol=0)
    assert halves(result.used) == used


def test_swarm_sgd_loops_for_its_drawn_local_steps_and_counts_them(tmp_path):
    """SwarmSGD as published over a control: the message core times device j's k-th loop as its drawn count
    of local steps x its step time, at least async_period_s, plus its send offset; metrics.csv's local_steps
    is the mean over devices of the counts of the loops ended by each period."""
    import pandas as pd

    from bridge.trace import LinkTrace
    from experiments.cli import main
    from experiments.run.async_loop import message_log
    from helpers import run_dirs

    path = tmp_path / "swarm.toml"
    path.write_text('name = "swarm"\nseed = 2\nrounds = 5\ndevices = 6\n[data]\ndataset = "digits"\n'
                    '[algorithm]\nname = "swarm_sgd"\nlocal_steps = 3\n[network]\nlink_model = "ideal"\n'
                    'schedule = "async"\ncompute_s_per_step = 0.2\nasync_period_s = 0.3\n')
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c"), "-q"]) == 0
    (trace_dir,) = [meta.parent for meta in (tmp_path / "c").rglob("meta.json")]
    trace = LinkTrace.load(trace_dir)
    plan = trace.meta["barrier"]
    assert plan["peers"] == "pairwise" and plan["local_steps_mean"] == 3.0 and plan["loop_floor_s"] == 0.3
    sent = trace.finished_s[:, 0, :].astype(float)
    counts = local_step_counts(2, *sent.shape, 3.0)
    loops = np.maximum(0.2 * counts, 0.3)
    starts = np.vstack([np.zeros((1, sent.shape[1])), sent[:-1]])
    offset = sent - starts - loops  # the send offset U(0, start_jitter_s) after each loop
    assert (offset > -1e-6).all() and (offset < 1.0 + 1e-6).all() and len(set(counts.ravel().tolist())) > 2
    (run_dir,) = [d for d in run_dirs(tmp_path / "r") if (d / "metrics.csv").exists()]
    metrics = pd.read_csv(run_dir / "metrics.csv")
    log = message_log(trace)
    for _, row in metrics.iloc[1:].iterrows():
        ended = log.step_end_s <= row["sim_time_s"]
        assert row["local_steps"] == pytest.approx((counts * ended).sum(axis=0).mean())
