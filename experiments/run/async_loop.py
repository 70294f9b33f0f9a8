"""The asynchronous schedule's run: the free-running message log, the batched engine, the run's files.

``schedule = "async"``: each device loops local step(s), send, merge on its own clock
(``learner.asynchronous``). The sends depend only on the devices' compute times, so the message log is
simulated first, offline, by the message core (``messages.schedules.FreeRunning``: nobody waits), over ns-3 or
a control.

**Time.** The run lasts ``rounds`` evaluation periods; a period is the median device's loop (its local steps'
compute, or ``network.async_period_s`` if longer: a device sends at most once per period, as gossip
learning's nodes do, so a fast device does not flood a shared channel) plus the mean of its send jitter: each
send waits U(0, ``start_jitter_s``) after the loop, the rounds' 1 s start jitter, without which devices of equal
speed stay in lockstep and their broadcasts collide every time (a first version with 5 ms lost 95 % of the
messages over ns-3). So a device of median speed takes about ``rounds`` steps, a straggler 5x
slower a fifth of them, a faster one more. metrics.csv row e is the state at e periods: every device's model
after its last step by then, its steps so far (``local_steps``: their mean, gradient evaluations per device),
and the ledger (``messages.ledger``) of the steps it ended by then: a device's clock counts from the start to
the end of its last step, its radio seconds between its step ends and its compute seconds. The log is simulated until every
device has taken enough steps to cover the run (the fastest one's count); steps after the run's end are
dropped, which changes nothing before it (a later send cannot change an earlier arrival).

**Mini-batches** are common random numbers: device j's c-th gradient evaluation uses the batch the synchronous
schedules give it at its c-th evaluation (``Devices.keyed_batch``, through ``runner.KeyedGradientOracle``), so
they do not depend on how the engine groups steps into levels, on the link model or on the timing; the
merges' partner draws are keyed by (seed, device, step) too (``learner.asynchronous.keyed_uniform``).

**Pairwise exchanges** (``peers = "pairwise"``, AD-PSGD and SwarmSGD as published): each message is a request
to one drawn neighbour and the partner's reply (``messages.schedules.FreeRunning``), the trace holds them as two
exchanges (``bridge.messages.pairwise_as_exchanges``) and ``learner.pairwise.run_pairwise`` applies each half
of an exchange when its message arrives; SwarmSGD's local-step counts are drawn per loop (``local_steps_of``)
and time the loop, the ledger's compute and metrics' local_steps. **To one peer** (``peers = "one"``, gossip
learning as published): each message goes to one drawn neighbour and the receiver merges and updates when it
arrives (``learner.pairwise.run_push``): a device's local steps, its compute and its loss are counted at its
receipts; staleness in steps counts the sender's loops.

**Files.** links.csv row e: the e-th message of every device (``bridge.stats.link_stats`` of log step e - 1);
``staleness.csv``: one row per device and step, the messages it merged and their mean staleness (the
sender's local steps since it sent, and the age in seconds). Per step rather than per message: a per-message
file is about as many times larger as a device has neighbours, and the messages are in the cached trace.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pandas as pd
import torch

from bridge.messages import pairwise_log, partners
from bridge.trace import LinkTrace
from experiments.run.contract import CheckedAsync, checked_init
from experiments.run import interrupts
from experiments.run.energy import device_ledger, energy_columns, round_zero_columns, state_columns
from experiments.run.run_outputs import CSV_FLOAT_FORMAT
from learner.asynchronous import run_async, staleness, step_counts
from learner.pairwise import run_pairwise, run_push
from messages.ledger import RADIO_STATES, Power
from messages.draws import local_step_counts
from messages.log import MessageLog
from messages.schedules import FreeRunning


def message_log(trace: LinkTrace) -> MessageLog:
    """The free-running trace as a message log: steps end at the sends, arrivals after them (and a pairwise
    trace's partners and replies: ``bridge.messages.pairwise_log``)."""
    sent = trace.finished_s[:, 0, :].astype(np.float64)
    arrival_s = sent[:, :, None] + trace.done_s[:, 0].astype(np.float64)
    peers = trace.meta.get("barrier", {}).get("peers")
    if peers == "pairwise":
        return MessageLog(sent, arrival_s, *pairwise_log(trace))
    if peers == "one":
        return MessageLog(sent, arrival_s, partners(trace))
    return MessageLog(sent, arrival_s)


def run_asynchronously(config, model, devices, algorithm, trace: LinkTrace, step_s: np.ndarray, recorder,
                       oracle, log: Callable[[str], None]) -> str:
    """Run, evaluate every period and write the rows; the run's status."""
    n, period = config.devices, FreeRunning.period_s(config, step_s)
    eval_s = period * np.arange(1, config.rounds + 1)
    messages = message_log(trace).within(float(eval_s[-1]))
    x = model.init(n, config.seed)
    recorder.add_round(0, 0.0, 0, recorder.evaluate(devices, x), math.nan, trace, None,
                       {**round_zero_columns(n), **merge_columns(np.zeros((0, 2)))},
                       device_ledger(np.zeros((n, len(RADIO_STATES))), np.zeros(n), np.zeros(n), np.zeros(n)))
    losses: list[tuple[np.ndarray, torch.Tensor]] = []  # (when the devices stepped, their loss)

    def keep_losses(level, _x) -> None:
        interrupts.check()
        active = np.flatnonzero(level.step >= 0)
        if oracle.losses:  # NaN where a device did not step in a call (random local-step counts)
            when = (level.time_s[active] if level.time_s is not None
                    else messages.step_end_s[level.step[active], active])
            losses.append((when, torch.stack(oracle.losses).nanmean(0)[active]))
        oracle.new_round()

    counts = local_steps_of(algorithm, config.seed, messages.step_end_s.shape)

    guarded = CheckedAsync(config.algorithm.name, algorithm, config.messages[0].width)
    with recorder.phase("step"):
        engine = run_pairwise if messages.pairwise else run_push if messages.one_peer else run_async
        result = engine(guarded, x, checked_init(config.algorithm.name, algorithm, x, seed=config.seed), oracle,
                        messages, eval_s, keep_losses, before_level=lambda level: oracle.begin(level.step >= 0),
                        **({"local_steps": counts} if messages.pairwise else {}))
    log(f"[nsdml] async: {int(step_counts(messages).sum())} device steps in {result.levels} batched levels, "
        f"{len(result.used)} merges")
    stale = staleness(result.used, messages, counts)
    merge_s = result.used.merged_s
    step_end = np.where(np.isnan(messages.step_end_s), np.inf, messages.step_end_s)
    power = Power.of(config.scenario, config.network.compute_power_w)
    step_radio_s = np.where(np.isfinite(step_end)[..., None], trace.radio_s[:messages.step_end_s.shape[0], 0], 0.0)
    update_s = np.where(np.isnan(result.used.merged_s), np.inf, result.used.merged_s)

    def local_steps_by(t: float) -> np.ndarray:
        """(N,) the local steps each device has run by ``t``: at its step ends, or (one peer) on receipts."""
        if messages.one_peer:
            return np.bincount(result.used.receiver[update_s <= t], minlength=n) * algorithm.local_steps
        return (counts * (step_end <= t)).sum(axis=0)
    status, spent_before, radio_before = "done", np.zeros(n), np.zeros(n)
    for e, t in enumerate(eval_s, start=1):
        x_e = result.snapshots[e - 1]
        if not torch.isfinite(x_e).all():
            status = "diverged"
            log(f"[nsdml] diverged by period {e}: non-finite parameters")
            break
        ended = step_end <= t
        done = local_steps_by(t)
        radio_s, compute_s = (step_radio_s * ended[..., None]).sum(axis=0), np.asarray(step_s, dtype=float) * done
        radio_j = power.radio_j(radio_s)
        spent = radio_j + power.compute_j(compute_s)
        window, radio_window = spent - spent_before, radio_j - radio_before
        spent_before, radio_before = spent, radio_j
        in_window = (merge_s > t - period) & (merge_s <= t)
        columns = {**energy_columns(radio_window, window - radio_window, spent, n),
                   **state_columns(radio_s, compute_s), **merge_columns(stale[in_window])}
        links = SimpleNamespace(used=len(trace.payload_bytes) if e - 1 < trace.rounds else 0,  # pairwise: 2
                                delivered=int(in_window.sum()))
        recorder.add_round(e, float(t), float(done.mean()),
                           recorder.evaluate(devices, x_e), _window_loss(losses, t - period, t),
                           trace, links, columns,
                           device_ledger(radio_s, compute_s, spent, np.where(ended, step_end, 0.0).max(axis=0)))
    recorder.write_text("staleness.csv", staleness_table(result.used, stale, messages).to_csv(
        index=False, float_format=CSV_FLOAT_FORMAT))
    return status


def local_steps_of(algorithm, seed: int, shape: tuple[int, int]) -> np.ndarray:
    """(K, N) the local steps each device runs before its k-th message: the algorithm's ``local_steps``, or,
    with ``random_local_steps``, the message core's draw (``messages.draws.local_step_counts``)."""
    if getattr(algorithm, "random_local_steps", False):
        return local_step_counts(seed, *shape, float(algorithm.local_steps))
    return np.full(shape, algorithm.local_steps, dtype=np.int64)


def merge_columns(stale: np.ndarray) -> dict:
    """metrics.csv's asynchronous columns for one period: messages merged, their mean staleness."""
    return {"merged_messages": len(stale),
            "mean_staleness_steps": float(stale[:, 0].mean()) if len(stale) else math.nan,
            "mean_staleness_s": float(stale[:, 1].mean()) if len(stale) else math.nan}


def _window_loss(losses, start: float, end: float) -> float:
    """Mean training loss of the local steps taken in (start, end]."""
    values = [loss[(when > start) & (when <= end)] for when, loss in losses]
    values = [v for v in values if len(v)]
    return float(torch.cat(values).mean()) if values else math.nan


def staleness_table(used, stale: np.ndarray, messages: MessageLog) -> pd.DataFrame:
    """One row per device and step that merged something: how many messages, their mean staleness."""
    frame = pd.DataFrame({"device": used.receiver, "step": used.step + 1,
                          "time_s": used.merged_s,
                          "staleness_steps": stale[:, 0], "staleness_s": stale[:, 1]})
    if frame.empty:
        return pd.DataFrame(columns=["device", "step", "time_s", "merged", "mean_staleness_steps",
                                     "mean_staleness_s"])
    return frame.groupby(["device", "step"], sort=True).agg(
        time_s=("time_s", "first"), merged=("staleness_steps", "size"),
        mean_staleness_steps=("staleness_steps", "mean"), mean_staleness_s=("staleness_s", "mean")).reset_index()
