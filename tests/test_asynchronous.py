"""The asynchronous engine against plain per-event loops written from the papers, over random message logs
(lossy, with stragglers): the batched levels give the same models (1e-6), merge nothing before its arrival
nor anything not received, and record the staleness the loop sees."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from helpers import run_dirs

from learner.algorithms.adpsgd_broadcast import ADPSGDBroadcast
from learner.algorithms.async_dpsgd import AsyncDPSGD
from learner.algorithms.gossip_learning_broadcast import GossipLearningBroadcast
from learner.algorithms.swarm_sgd_broadcast import SwarmSGDBroadcast
from learner.algorithms.registry import ASYNCHRONOUS, names_of_kind
from learner.asynchronous import keyed_uniform, plan_levels, run_async, staleness
from messages.log import MessageLog
from experiments.examples.my_async_gossip import NewestMean
from test_pairwise import ONE_PEER, PAIRWISE

DIM = 3


def random_log(seed: int, n: int = 6, steps: int = 7, loss: float = 0.3, stragglers: bool = True) -> MessageLog:
    """Each device's steps end at cumulative compute times (two devices 4x slower with ``stragglers``); each
    message arrives 0.05-0.6 s after its send, or is lost with probability ``loss``."""
    rng = np.random.default_rng(seed)
    compute = rng.uniform(0.2, 0.4, n) * np.where(np.arange(n) < (2 if stragglers else 0), 4.0, 1.0)
    step_s = np.cumsum(compute[None, :] + rng.uniform(0, 0.01, (steps, n)), axis=0)
    delay = rng.uniform(0.05, 0.6, (steps, n, n))
    arrival_s = np.where(rng.random((steps, n, n)) < loss, np.nan, step_s[:, :, None] + delay)
    arrival_s[:, np.arange(n), np.arange(n)] = np.nan
    return MessageLog(step_s, arrival_s).within(float(np.median(step_s[-1])))


def quadratic(n: int, seed: int):
    """Device i's gradient g_i(x) = a_i * (x - b_i): deterministic, different per device."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 1, generator=gen, dtype=torch.float64) + 0.5
    b = torch.randn(n, DIM, generator=gen, dtype=torch.float64)
    return lambda x: a * (x - b), (lambda i, xi: a[i] * (xi - b[i]))


def reference(algorithm, log: MessageLog, x0: torch.Tensor, device_grad, seed: int, eval_s: np.ndarray):
    """Per-event loop: the steps one by one in time order (ties by device), each device's local step, send and
    merge written from its paper by the algorithm's own ``reference()`` (next to it), its merges in arrival
    order. Returns (models at eval_s, used merges)."""
    by_event = algorithm.reference()
    n = x0.shape[0]
    x = [x0[i].clone() for i in range(n)]
    memory = [by_event.start(x[i]) for i in range(n)]
    sent: dict[tuple[int, int], tuple] = {}
    merged: set[tuple[int, int, int]] = set()
    used = []
    snapshots = torch.zeros(len(eval_s), n, DIM, dtype=x0.dtype)
    events = sorted((float(log.step_end_s[k, j]), j, k) for j in range(n) for k in range(log.step_end_s.shape[0])
                    if not math.isnan(log.step_end_s[k, j]))
    for e, t in enumerate(eval_s):  # initial models stand until a device's first step
        for j in range(n):
            if t < log.step_end_s[0, j]:
                snapshots[e, j] = x[j]
    for t, j, k in events:
        x[j], memory[j] = by_event.local(x[j], memory[j], lambda xj: device_grad(j, xj))
        sent[(k, j)] = by_event.send(x[j], memory[j])
        inbox = sorted((float(log.arrival_s[kk, i, j]), i, kk) for kk in range(log.step_end_s.shape[0]) for i in range(n)
                       if not math.isnan(log.arrival_s[kk, i, j]) and log.arrival_s[kk, i, j] <= t
                       and (kk, i, j) not in merged)
        for _, i, kk in inbox:
            merged.add((kk, i, j))
        draw = float(keyed_uniform(seed, np.array([j]), np.array([k]))[0])
        x[j], memory[j], positions = by_event.merge(x[j], memory[j], [(i, sent[(kk, i)]) for _, i, kk in inbox], draw)
        used += [(j, k, inbox[p][1], inbox[p][2]) for p in positions]
        following = log.step_end_s[k + 1, j] if k + 1 < log.step_end_s.shape[0] else math.inf
        following = math.inf if math.isnan(following) else following
        for e, te in enumerate(eval_s):
            if t <= te < following:
                snapshots[e, j] = x[j]
    return snapshots, sorted(used)


ALGORITHMS = {"adpsgd_broadcast": ADPSGDBroadcast(lr=0.2), "swarm_sgd_broadcast": SwarmSGDBroadcast(lr=0.2, local_steps=3),
              "gossip_learning_broadcast": GossipLearningBroadcast(lr=0.2, local_steps=2), "async_dpsgd": AsyncDPSGD(lr=0.2),
              "plugin": NewestMean(lr=0.2)}  # the example plugin (experiments/examples/my_async_gossip.py)


def test_every_registered_asynchronous_algorithm_is_held_to_its_reference():
    assert set(names_of_kind(ASYNCHRONOUS)) == set(ALGORITHMS) - {"plugin"} | PAIRWISE | ONE_PEER
    assert all(callable(getattr(ALGORITHMS[name], "reference", None)) for name in ALGORITHMS)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("log_seed,loss,stragglers", [(1, 0.0, False), (2, 0.3, True), (3, 0.6, True)])
def test_the_batched_engine_equals_a_per_event_loop_from_the_paper(name, log_seed, loss, stragglers):
    algorithm = ALGORITHMS[name]
    log = random_log(log_seed, loss=loss, stragglers=stragglers)
    grad, device_grad = quadratic(log.step_end_s.shape[1], seed=log_seed)
    x0 = torch.randn(log.step_end_s.shape[1], DIM, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    eval_s = np.linspace(0.1, float(np.nanmax(log.step_end_s)) + 0.5, 9)
    result = run_async(algorithm, x0.clone(), algorithm.init(x0, seed=11), grad, log, eval_s)
    expected, used = reference(algorithm, log, x0, device_grad, seed=11, eval_s=eval_s)
    torch.testing.assert_close(result.snapshots, expected, atol=1e-6, rtol=0)
    assert result.used.rows() == used
    assert result.levels < int((~np.isnan(log.step_end_s)).sum())  # batched: fewer levels than steps


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), loss=st.floats(0.0, 0.9), n=st.integers(2, 7), steps=st.integers(1, 8))
def test_no_message_is_merged_before_it_arrived_or_without_being_received(seed, loss, n, steps):
    log = random_log(seed, n=n, steps=steps, loss=loss)
    _, merges = plan_levels(log)
    for receiver, step, sender, sent_step in merges.rows():
        arrival = log.arrival_s[sent_step, sender, receiver]
        assert not math.isnan(arrival)  # it was received
        assert arrival <= log.step_end_s[step, receiver]  # and arrived before the merge
        if step:  # and after the receiver's previous merge (each message merged once, at the first chance)
            assert arrival > log.step_end_s[step - 1, receiver]
    last_step_s = np.where(np.isnan(log.step_end_s), -np.inf, log.step_end_s).max(axis=0)
    received = {(k, i, j) for k, i, j in zip(*np.nonzero(~np.isnan(log.arrival_s)))
                if log.arrival_s[k, i, j] <= last_step_s[j]}
    assert {(k, i, j) for j, _, i, k in merges.rows()} == received
    # staleness: the sender's steps since the send, at the merge, as a per-event count gives it
    for n_merge, (stale_steps, age_s) in enumerate(staleness(merges, log, local_steps=2)):
        receiver, step, sender, sent_step = (int(getattr(merges, name)[n_merge])
                                             for name in ("receiver", "step", "sender", "sent_step"))
        merged_s = log.step_end_s[step, receiver]
        later = [k for k in range(log.step_end_s.shape[0]) if k > sent_step and log.step_end_s[k, sender] <= merged_s]
        assert stale_steps == 2 * len(later)
        assert age_s == pytest.approx(merged_s - log.step_end_s[sent_step, sender])


def test_a_hand_made_log_two_devices():
    """Device 0 steps at 1 and 2 s, device 1 at 1.5 s; 0's first message reaches 1 at 1.2 s, 1's reaches 0 at
    1.9 s; AD-PSGD's broadcast form with a vanishing lr (pure averaging): at 1.5 s device 1 sends its model (4), then merges:
    x1 <- (4 + 0) / 2 = 2; at 2 s device 0 merges 1's message, sent before that merge: x0 <- (0 + 4) / 2."""
    nan = math.nan
    step_s = np.array([[1.0, 1.5], [2.0, nan]])
    arrival_s = np.full((2, 2, 2), nan)
    arrival_s[0, 0, 1], arrival_s[0, 1, 0] = 1.2, 1.9
    x0 = torch.tensor([[0.0], [4.0]], dtype=torch.float64)
    result = run_async(ADPSGDBroadcast(lr=1e-12), x0, 0, lambda x: torch.zeros_like(x), MessageLog(step_s, arrival_s),
                       eval_s=np.array([0.5, 1.6, 2.5]))
    assert result.snapshots[:, :, 0].tolist() == [[0.0, 4.0], [0.0, 2.0], [2.0, 2.0]]
    assert result.levels == 3  # 0@1s, then 1@1.5s (needs it), then 0@2s (needs 1's)


RUN = """seed = 1
rounds = {rounds}
devices = {devices}
[data]
dataset = "digits"
alpha = 0.1
[algorithm]
name = "{algorithm}"
[network]
link_model = "{link_model}"
schedule = "{schedule}"
compute_s_per_step = 0.3
{extra}
"""


@pytest.mark.parametrize("algorithm,schedule,extra,field", [
    ("dpsgd", "async", "", "network.schedule: 'async' is not allowed; expected \"rounds\" or \"local_barrier\" or \"stale_synchronous\" for dpsgd"),
    ("adpsgd", "rounds", "", "network.schedule: 'rounds' is not allowed; expected \"async\" for adpsgd"),
    ("gossip_learning", "async", "radio_sleep = true", "network.radio_sleep"),
    ("swarm_sgd", "async", 'mode = "online"', "network.mode"),
])
def test_settings_that_do_not_go_with_the_asynchronous_schedule_are_refused(tmp_path, capsys, algorithm, schedule,
                                                                             extra, field):
    from experiments.cli import main
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(rounds=3, devices=4, algorithm=algorithm, link_model="ideal", schedule=schedule,
                               extra=extra))
    assert main(["run", str(path), "--results", str(tmp_path / "results")]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_an_async_run_over_real_ns3_completes_and_a_second_one_is_byte_identical(tmp_path):
    """Ten devices over ns-3, each run simulating its own trace (two caches): the same CSVs byte for byte."""
    from experiments.cli import main
    path = tmp_path / "run.toml"
    path.write_text(RUN.format(rounds=4, devices=10, algorithm="async_dpsgd", link_model="ns3", schedule="async",
                               extra='compute_model = "stragglers"'))
    outputs = []
    for copy in ("a", "b"):
        assert main(["run", str(path), "--results", str(tmp_path / copy), "--cache", str(tmp_path / f"cache-{copy}"),
                     "--quiet"]) == 0
        (run_dir,) = run_dirs(tmp_path / copy)
        outputs.append({name: (run_dir / name).read_bytes() for name in
                        ("metrics.csv", "links.csv", "device_metrics.csv", "staleness.csv")})
    assert outputs[0] == outputs[1]
    # The engine against the per-event loops over this real 802.11a message log too (stragglers included).
    from bridge.trace import LinkTrace
    from experiments.run.async_loop import message_log
    (trace_dir,) = [p.parent for p in (tmp_path / "cache-a").rglob("meta.json")]
    log = message_log(LinkTrace.load(trace_dir))
    assert 0 < np.isfinite(log.arrival_s).mean() < 1  # lossy
    grad, device_grad = quadratic(10, seed=5)
    x0 = torch.randn(10, DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eval_s = np.linspace(0.5, float(np.nanmax(log.step_end_s)), 6)
    for name, algorithm in ALGORITHMS.items():
        result = run_async(algorithm, x0.clone(), algorithm.init(x0, seed=2), grad, log, eval_s)
        expected, used = reference(algorithm, log, x0, device_grad, seed=2, eval_s=eval_s)
        torch.testing.assert_close(result.snapshots, expected, atol=1e-6, rtol=0)
        assert result.used.rows() == used
    metrics = outputs[0]["metrics.csv"].decode().splitlines()
    assert len(metrics) == 1 + 5 and "mean_staleness_s" in metrics[0]  # header, rows 0-4
    staleness_rows = outputs[0]["staleness.csv"].decode().splitlines()
    assert len(staleness_rows) > 10  # devices merged their neighbours' messages on ns-3's clock


def test_a_device_sends_at_most_once_per_async_period():
    import tomllib

    from experiments.run.compute import step_times
    from messages.schedules import FreeRunning
    from experiments.config import parse_config
    config = parse_config(tomllib.loads(RUN.format(rounds=10, devices=5, algorithm="swarm_sgd_broadcast", link_model="ideal",
                                                   schedule="async", extra="async_period_s = 1.0")))
    plan = FreeRunning.plan_for(config, step_times(config.network, 5, 1))
    # compute 0.3 s x H = 2 local steps = 0.6 s < the 1 s period: every device loops once a second
    assert plan.step_s == (1.0,) * 5 and plan.quorum == 0 and plan.timeout_s == 0
    assert plan.steps == 15 + 1  # ceil(10 periods of 1.5 s (the loop and half the 1 s jitter) / 1 s a loop), + 1
    slow = parse_config(tomllib.loads(RUN.format(rounds=10, devices=5, algorithm="swarm_sgd_broadcast", link_model="ideal",
                                                 schedule="async", extra="async_period_s = 0.5")))
    assert FreeRunning.plan_for(slow, step_times(slow.network, 5, 1)).step_s == (0.6,) * 5  # compute is longer


def test_the_async_table_pairs_each_method_with_dpsgd_under_rounds_seed_by_seed():
    import pandas as pd

    from experiments.campaigns.async_table import paired, settings_markdown, settings_table
    rows = []
    for name, schedule, seconds in (("dpsgd", "rounds", (40.0, 50.0, 60.0)), ("adpsgd", "async", (30.0, 42.0, 51.0))):
        for seed, s in zip((1, 2, 3), seconds):
            rows.append({"devices": 20, "network.link_model": "ns3", "compute": "constant",
                         "loop": ">= 1.05 s" if schedule == "async" else schedule,
                         "method": name if schedule == "async" else f"{name} ({schedule})", "seed": seed,
                         "final_acc": 0.7, "steps_to_target": s / 2, "time_to_target_s": s,
                         "energy_to_target_j": 10 * s, "staleness_steps": 0.5 if schedule == "async" else math.nan,
                         "staleness_s": 0.4 if schedule == "async" else math.nan, "status": "done"})
    runs = pd.DataFrame(rows)
    row = paired(runs).iloc[0]
    # seconds: -10, -8, -9 -> -9.0 ± 4.3027 * 1 / sqrt 3 = 2.48 (3 pairs)
    assert row["algorithm"] == "adpsgd" and row["reference"] == "dpsgd (rounds)" and row["kind"] == "reference"
    assert row["time_to_target_s_diff"] == pytest.approx(-9.0)
    assert row["time_to_target_s_half"] == pytest.approx(4.302652729911275 / math.sqrt(3))
    text = settings_markdown(settings_table(runs), 0.6)
    assert "| 20 | ns3 | constant | rounds | dpsgd (rounds) | 0.700 ± 0.000 | 25.0 ± 12.4 (3/3) | 50.0 ± 24.8 (3/3) |" in text
    from experiments.campaigns.async_table import paired_markdown
    from scipy.stats import ttest_rel
    p = ttest_rel([30.0, 42.0, 51.0], [40.0, 50.0, 60.0]).pvalue  # the seconds' paired t-test
    assert f"-9.0 ± 2.5 (3), Holm p" in paired_markdown(paired(runs)) and row["time_to_target_s_p"] == pytest.approx(p)
    assert "| n/a |" not in text.split("adpsgd")[1]  # the asynchronous rows have a staleness


def test_a_devices_keyed_batches_follow_its_own_count_and_are_the_synchronous_schedules_batches():
    """Device j's c-th keyed batch is row j of the c-th synchronous draw, whatever the others' counts."""
    from learner.data import load_dataset, partition
    from learner.devices import Devices
    from learner.models import build_model

    data = load_dataset("digits", 0.2, seed=3)
    shards = partition(data.y_train, 4, "dirichlet", 1.0, 0.0, seed=3)
    model = build_model("logreg", data.num_features, data.num_classes)
    synchronous = Devices(model, data, shards, batch_size=8, seed=3)
    drawn = [synchronous.sample_batch()[1] for _ in range(6)]  # labels (4, 8) of the first six draws
    keyed = Devices(model, data, shards, batch_size=8, seed=3)
    for counts in ([0, 5, 2, 1], [3, 5, 0, 0], [5, 0, 4, 2]):
        labels = keyed.keyed_batch(np.array(counts))[1]
        for j, c in enumerate(counts):
            assert torch.equal(labels[j], drawn[c][j]), (counts, j)


def test_the_keyed_oracle_computes_only_the_stepping_devices_gradients_and_those_exactly():
    """A level's oracle call: the stepping devices' rows equal the full computation at their keyed batches
    (1e-6), the others' rows are zero and their counts stay."""
    from learner.data import load_dataset, partition
    from learner.devices import Devices
    from learner.models import build_model
    from experiments.run.runner import KeyedGradientOracle

    data = load_dataset("digits", 0.2, seed=3)
    shards = partition(data.y_train, 4, "dirichlet", 1.0, 0.0, seed=3)
    model = build_model("logreg", data.num_features, data.num_classes)
    devices = Devices(model, data, shards, batch_size=8, seed=3)
    recorder = type("Recorder", (), {"phase": lambda self, name: __import__("contextlib").nullcontext()})()
    oracle = KeyedGradientOracle(devices, recorder)
    oracle.counts[:] = [2, 0, 1, 3]
    x = model.init(4, 0) + 0.01 * torch.randn(4, model.dim, generator=torch.Generator().manual_seed(1))
    full, _ = devices.keyed_gradients(x, oracle.counts.copy())
    oracle.begin(np.array([True, False, True, False]))
    grad, loss = oracle.with_loss(x)
    torch.testing.assert_close(grad[[0, 2]], full[[0, 2]], atol=1e-6, rtol=0)
    assert (grad[[1, 3]] == 0).all() and (loss[[1, 3]] == 0).all() and (loss[[0, 2]] > 0).all()
    assert oracle.counts.tolist() == [3, 0, 2, 3]


def test_an_asynchronous_runs_batches_do_not_depend_on_the_timing_or_the_levels(tmp_path, monkeypatch):
    """Two async runs of one seed whose compute times differ (so their logs, levels and merges differ) give
    each device the same sequence of batches, step by step: the batches of its own steps, in order."""
    from experiments.config import parse_config
    from experiments.run.runner import KeyedGradientOracle, run_experiment
    from learner.devices import Devices

    sequences, stepping = {}, {}
    real_batch, real_begin = Devices.keyed_batch, KeyedGradientOracle.begin

    def begin(self, active):
        stepping["now"] = np.flatnonzero(active)
        real_begin(self, active)

    def batch(self, counts, devices=None):
        inputs, labels = real_batch(self, counts, devices)
        for position, j in enumerate(range(len(counts)) if devices is None else devices):
            if j in stepping["now"]:
                sequences.setdefault(stepping["run"], {}).setdefault(int(j), []).append(labels[position].clone())
        return inputs, labels

    monkeypatch.setattr(KeyedGradientOracle, "begin", begin)
    monkeypatch.setattr(Devices, "keyed_batch", batch)
    for run, compute in (("fast", 0.1), ("slow", 0.4)):
        stepping["run"] = run
        config = parse_config({"rounds": 3, "devices": 4, "data": {"dataset": "digits"},
                               "algorithm": {"name": "async_dpsgd"},
                               "network": {"link_model": "ideal", "schedule": "async", "compute_model": "stragglers",
                                           "compute_s_per_step": compute}})
        run_experiment(config, tmp_path / run, tmp_path / f"cache-{run}", log=lambda message: None)
    for j in range(4):
        fast, slow = sequences["fast"][j], sequences["slow"][j]
        assert min(len(fast), len(slow)) >= 2
        assert all(torch.equal(a, b) for a, b in zip(fast, slow)), j


def _async_runs(seconds: dict[str, list[float]], lr: float = 1.0):
    """A per-seed runs table as async_table.runs_table writes it: a tuning sweep (two rates per algorithm, the
    higher one reaching sooner) and one evaluation setting, ns-3 with constant compute."""
    import pandas as pd

    rows = []
    for label, times in seconds.items():
        name, _, schedule = label.partition(" (")
        schedule = schedule.rstrip(")") or "async"
        common = {"algorithm.name": name, "network.schedule": schedule, "network.link_model": "ns3",
                  "network.compute_model": "constant", "network.straggler_slowdown": 50.0,
                  "network.async_period_s": 1.05, "devices": 20, "rounds": 80, "status": "done",
                  "staleness_steps": 0.2 if schedule == "async" else math.nan,
                  "staleness_s": 0.5 if schedule == "async" else math.nan}
        for rate, periods in ((0.1, 30.0), (1.0, 20.0), (10.0, 25.0)):
            rows.append({**common, "sweep": "t-tune", "run_id": f"{name}-{rate}", "algorithm.lr": rate, "seed": 0,
                         "final_acc": 0.8, "conv_rounds": periods, "steps_to_target": periods,
                         "time_to_target_s": periods, "energy_to_target_j": periods})
        for seed, t in enumerate(times, start=1):
            rows.append({**common, "sweep": "t-table", "run_id": f"{label}-{seed}", "algorithm.lr": lr, "seed": seed,
                         "final_acc": 0.8, "conv_rounds": t, "steps_to_target": t, "time_to_target_s": t,
                         "energy_to_target_j": 10 * t})
    return pd.DataFrame(rows)


def test_the_async_reading_is_computed_from_its_table_and_follows_a_changed_value():
    from scipy.stats import t as student

    from experiments.analysis.tuning import TuningError
    from experiments.campaigns.async_table import check_tuned, render

    seconds = {"dpsgd (rounds)": [50.0, 52.0, 49.0, 55.0, 51.0], "adpsgd": [30.0, 33.0, 31.0, 29.0, 35.0],
               "adpsgd_broadcast": [40.0, 41.0, 44.0, 39.0, 46.0], "dpsgd_one_way (rounds)": [48.0, 52.0, 50.0, 53.0, 50.0]}
    runs = _async_runs(seconds)
    check_tuned(runs)  # every evaluation run at the tuned lr 1
    text = render(runs, 0.6)
    diff = np.subtract(seconds["adpsgd"], seconds["adpsgd_broadcast"])  # -10, -8, -13, -10, -11
    half = student.ppf(0.975, 4) * diff.std(ddof=1) / math.sqrt(5)
    assert f"AD-PSGD − AD-PSGD (broadcast): {diff.mean():.1f} ± {half:.1f} s (5 pairs, Holm p" in text
    assert "faster" in text.split("AD-PSGD − AD-PSGD (broadcast)")[1].split(";")[0]
    assert "**bold**" not in text and "**20.0 (1/1)**" in text  # lr 1 chosen, interior of 0.1-10
    assert "Every choice is interior." in text
    ablation = text.split("one change at a time")[1].split("\n")[0]
    assert "D-PSGD, one-way links (rounds) − D-PSGD (rounds): -0.8 ± " in ablation  # 48-50, 52-52, ...: -0.8
    changed = runs.copy()
    changed.loc[(changed["run_id"] == "adpsgd-3"), "time_to_target_s"] = 44.0  # one seed of one method
    assert render(changed, 0.6) != text
    assert f"{np.mean([30.0, 33.0, 44.0, 29.0, 35.0]):.1f} ±" in render(changed, 0.6)
    with pytest.raises(TuningError, match="algorithm_overrides.adpsgd.lr"):
        check_tuned(_async_runs(seconds, lr=0.1))
