"""One run: config -> link trace -> rounds of training -> results/<run-id>/.

The round loop reads like the round contract (experiments/design.md): links of the
round (without devices whose battery is empty), the algorithm's step (compute,
exchange, aggregate), the simulated clock and energy, the divergence check,
the log. Timing, progress and files live behind
``RunRecorder``; the gradient callable is a ``GradientOracle``.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from inspect import signature
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from bridge import link_stats, open_links, trace_key
from experiments.config import ConfigError, RunConfig, prefixed
from experiments.energy import EnergyMeter, round_zero_columns
from experiments.fingerprint import run_fingerprint
from experiments.plots import plot_accuracy
from experiments.progress import progress_bar
from experiments.run_writer import FINISHED, RunWriter, reusable, run_lock, run_record, run_status, stale_because
from learner.allocator import keep_freed_memory
from learner.algorithms import Algorithm
from learner.data import Dataset, load_dataset, partition
from learner.devices import Devices, Evaluation
from learner.models import BatchedModel, build_model
from learner.server import is_server

CSV_FLOAT_FORMAT = "%.8g"


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: pd.DataFrame
    status: str  # "done" or "diverged"
    trace_reused: bool
    run_reused: bool = False  # a finished run by the same code was found: nothing was computed

    @property
    def final_accuracy(self) -> float:
        return float(self.metrics["mean_accuracy"].dropna().iloc[-1])


class RunFailed(RuntimeError):
    """A run raised (e.g. ran out of memory); its run.json says ``failed`` with the reason."""


class TraceCacheError(RuntimeError):
    """The link-trace cache could not be read or written (not the results directory's fault)."""


@dataclass(frozen=True)
class Setup:
    """Everything a run builds from its config before the first round."""

    dataset: Dataset
    shards: list[np.ndarray]
    model: BatchedModel
    devices: Devices
    algorithm: Algorithm


def prepare(config: RunConfig) -> Setup:
    dataset = load_dataset(config.data.dataset, config.data.test_fraction, config.seed, config.data.root,
                           config.data.download)
    shards = partition(dataset.y_train, config.devices, config.data.partition, config.data.alpha,
                       config.data.shuffled_fraction, config.seed)
    model = build_model(config.model.name, dataset.num_features, dataset.num_classes, config.model.hidden,
                        dataset.image_shape)
    devices = Devices(model, dataset, shards, config.data.batch_size, config.seed)
    return Setup(dataset, shards, model, devices, config.algorithm.instance)


def sample_counts(algorithm: Algorithm, shards: list[np.ndarray]) -> dict:
    """``samples=`` (each device's shard size) for an algorithm whose ``init`` weights by it (FedAvg)."""
    return {"samples": [len(shard) for shard in shards]} if "samples" in signature(algorithm.init).parameters else {}


def trace_request(config: RunConfig) -> tuple:
    """The arguments of ``obtain_trace`` this run needs (runs with equal requests share one trace)."""
    return (config.network.link_model, config.scenario, config.payloads, config.rounds, config.seed)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Compute with one intra-op thread: results then do not depend on the machine's core count or on
    how many runs share it (a sweep parallelises across runs instead). Freed tensors stay in the heap
    (learner.allocator) so each round's large tensors are not page-faulted in again."""
    keep_freed_memory()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_experiment(config: RunConfig, results_root: Path, cache_dir: Path,
                   log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
                   progress: bool = False) -> RunResult:
    """Run ``config`` into ``results_root/<run-id>/``, or reuse it when the same code already finished it."""
    results_root = Path(results_root)
    run_dir = results_root / config.run_id
    fingerprint = run_fingerprint(config)
    if reusable(run_dir, fingerprint):
        return _reused(run_dir)
    recorder = RunRecorder(config, progress)
    with single_threaded():
        try:
            with recorder.phase("setup"):  # data, partition, model
                setup = prepare(config)
        except ValueError as error:  # settings that only the data can refute, e.g. more devices than samples
            raise ConfigError(prefixed(str(error), "data.")) from error
        with run_lock(results_root, config.run_id, on_wait=log):
            if reusable(run_dir, fingerprint):  # another process finished it while this one waited
                return _reused(run_dir)
            details = {"code_fingerprint": fingerprint, "network_mode": config.network.mode,
                       "trace_key": trace_key(*trace_request(config))}
            if run_status(run_dir) in FINISHED:
                details["recomputed_because"] = stale_because(run_dir, fingerprint)
                log(f"[nsdml] recomputing {config.run_id}: {details['recomputed_because']}")
            return _run(config, setup, recorder, run_dir, Path(cache_dir), details, log)


def _reused(run_dir: Path) -> RunResult:
    return RunResult(run_dir, pd.read_csv(run_dir / "metrics.csv"), run_record(run_dir)["status"],
                     trace_reused=True, run_reused=True)


class GradientOracle:
    """The ``grad_fn`` an algorithm calls: every device's stochastic gradient at its parameters.

    ``oracle(x) -> grad (N, d)``; ``oracle.with_loss(x) -> (grad, loss (N,))`` for
    algorithms that use the mini-batch losses (``gradients_and_losses``). It
    counts its calls in the current round (each is one local step on every
    device, charged ``compute_s_per_step`` of simulated time) and keeps the
    losses it saw for the round's ``train_loss``.
    """

    def __init__(self, devices: Devices, recorder: "RunRecorder"):
        self._devices = devices
        self._recorder = recorder
        self.losses: list[torch.Tensor] = []

    def new_round(self) -> None:
        self.losses = []

    @property
    def calls(self) -> int:
        return len(self.losses)

    @property
    def mean_loss(self) -> float:
        return float(torch.stack(self.losses).mean()) if self.losses else math.nan

    def with_loss(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._recorder.phase("training"):
            grad, loss = self._devices.gradients(params)
        self.losses.append(loss)
        return grad, loss

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return self.with_loss(params)[0]


def _run(config: RunConfig, setup: Setup, recorder: "RunRecorder", run_dir: Path, cache_dir: Path, details: dict,
         log: Callable[[str], None]) -> RunResult:
    model, devices, algorithm = setup.model, setup.devices, setup.algorithm
    log(f"[nsdml] link trace: {config.network.link_model}, {config.devices} devices, density "
        f"{config.scenario.density}, {config.rounds} rounds x {len(config.payloads)} exchange(s) of "
        f"{config.payloads} bytes")
    try:
        with recorder.phase("links"):
            source = open_links(config.network.mode, config.network.link_model, config.scenario, config.payloads,
                                config.rounds, config.seed, cache_dir, config.network.worker_timeout_s)
    except OSError as error:
        raise TraceCacheError(f"cannot use the link-trace cache {cache_dir}: {error.strerror or error} "
                              f"({error.filename or cache_dir})") from error
    log(f"[nsdml] {source.describe()}: idle density {source.trace.meta.get('idle_density', float('nan')):.3f}")
    recorder.open(run_dir, details)
    oracle = GradientOracle(devices, recorder)
    network = config.network
    meter = EnergyMeter(source.trace, config.devices, network.compute_power_w, network.compute_s_per_step,
                        network.battery_j)
    server_s = network.server_compute_s if is_server(algorithm) else 0.0
    status = "done"
    try:
        x = model.init(config.devices, config.seed)
        state = algorithm.init(x, seed=config.seed, model=model, **sample_counts(algorithm, setup.shards))
        clock_s = 0.0
        recorder.add_round(0, clock_s, recorder.evaluate(devices, x), math.nan, source.trace, None,
                           round_zero_columns(config.devices))
        for round_index in range(config.rounds):
            links = meter.links(source.round_links(round_index))
            oracle.new_round()
            with recorder.phase("step"):  # compute (oracle calls), exchanges and aggregation
                x_next, state = algorithm.step(x, state, oracle, links)
            x = meter.hold_dead(x, x_next)
            clock_s += oracle.calls * network.compute_s_per_step + links.duration_s + server_s
            energy = meter.charge(round_index, links.used, oracle.calls)
            if not torch.isfinite(x).all():
                status = "diverged"
                log(f"[nsdml] diverged at round {round_index + 1}: non-finite parameters")
                break
            evaluated = (round_index + 1) % config.eval_every == 0 or round_index + 1 == config.rounds
            evaluation = recorder.evaluate(devices, x) if evaluated else None
            recorder.add_round(round_index + 1, clock_s, evaluation, oracle.mean_loss, source.trace, links, energy)
    except KeyboardInterrupt:
        recorder.close("interrupted")
        raise
    except Exception as error:  # the run is marked failed, never left "running"
        reason = "out of memory" if isinstance(error, MemoryError) else f"{type(error).__name__}: {error}"
        recorder.close("failed", error=reason)
        if isinstance(error, MemoryError):
            raise RunFailed(f"run {config.run_id} ran out of memory at round {recorder.rounds_completed + 1}; "
                            f"lower rounds, devices or the model size") from error
        raise
    reused = source.finish()
    battery = {"battery_died_round": meter.died_round} if network.battery_j > 0 else {}
    recorder.finish(status, setup, reused, source.trace.meta, energy_total_j=float(meter.spent_j.sum()), **battery)
    return RunResult(run_dir, pd.DataFrame(recorder.metric_rows), status, reused)


class RunRecorder:
    """Timing, progress and the run's files, behind the round loop: one row per round, then the final record."""

    def __init__(self, config: RunConfig, progress: bool):
        self._config = config
        self._progress = progress
        self._started = time.perf_counter()
        self._clock = PhaseClock()
        self._writer: RunWriter | None = None
        self._bar = None
        self.metric_rows: list[dict] = []
        self.last_evaluation: Evaluation | None = None

    def phase(self, name: str):
        return self._clock(name)

    @property
    def rounds_completed(self) -> int:
        return self._writer.rounds_completed if self._writer else 0

    def open(self, run_dir: Path, details: dict) -> None:
        with self.phase("io"):
            self._writer = RunWriter(run_dir, self._config.to_toml(), details, expected_rounds=self._config.rounds)
        self._bar = progress_bar(self._config.rounds, self._config.run_id, "round", self._progress)

    def evaluate(self, devices: Devices, x: torch.Tensor) -> Evaluation:
        with self.phase("evaluation"):
            self.last_evaluation = devices.evaluate(x)
        return self.last_evaluation

    def add_round(self, round_index: int, clock_s: float, evaluation: Evaluation | None, train_loss: float,
                  trace, links, energy: dict) -> None:
        used = links.used if links is not None else 0
        delivered = sum(int(trace.delivered(round_index - 1, e).sum()) for e in range(used))
        row = {**metrics_row(round_index, clock_s, evaluation, train_loss, delivered), **energy}
        self.metric_rows.append(row)
        with self.phase("io"):
            rows = link_stats(trace, round_index - 1, used, self._config.devices) if used else []
            self._writer.add_round(row, rows)
        if round_index > 0:
            self._bar.update()
            if row["mean_accuracy"] == row["mean_accuracy"]:
                self._bar.set_postfix(accuracy=f"{row['mean_accuracy']:.4f}")

    def close(self, status: str, **details) -> None:
        """End an unfinished run (interrupted or failed): its rows are kept, its status says why."""
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.finish(status, wall_seconds=self._wall(), **details)

    def finish(self, status: str, setup: Setup, trace_reused: bool, trace_meta: dict, **energy) -> None:
        self._bar.close()
        metrics = pd.DataFrame(self.metric_rows)
        final = self.last_evaluation if status == "done" else None  # the last round is always evaluated
        writer = self._writer
        with self.phase("io"):
            writer.write_text("devices.csv", device_table(setup.shards, setup.dataset.y_train, final).to_csv(
                index=False, float_format=CSV_FLOAT_FORMAT))
            plot_accuracy(metrics, writer.run_dir / "accuracy.png",
                          title=f"{self._config.algorithm.name}: {self._config.run_id}")
        details = {"diverged_at_round": writer.rounds_completed + 1} if status == "diverged" else {}
        writer.finish(status, wall_seconds=self._wall(), trace_reused=trace_reused,
                      trace_meta={k: v for k, v in trace_meta.items() if not isinstance(v, dict)},
                      wall_split_s=self._clock.split(), **energy, **details)

    def _wall(self) -> float:
        return round(time.perf_counter() - self._started, 3)


class PhaseClock:
    """Wall seconds spent per phase of a run (``with clock("training"): ...``), for run.json and the bench."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

    def split(self) -> dict[str, float]:
        """setup, links (ns-3 or cache), training, aggregation (step minus training), evaluation, io."""
        phases = dict(self.seconds)
        step = phases.pop("step", 0.0)
        phases["aggregation"] = step - phases.get("training", 0.0)
        return {phase: round(seconds, 4) for phase, seconds in sorted(phases.items())}


def metrics_row(round_index: int, clock_s: float, evaluation: Evaluation | None, train_loss: float,
                delivered: int) -> dict:
    """One round's row; a round that was not evaluated (``eval_every``) leaves the test columns empty (NaN)."""
    nan = math.nan
    return {
        "round": round_index,
        "sim_time_s": clock_s,
        "mean_accuracy": float(evaluation.accuracy.double().mean()) if evaluation else nan,  # float64: <= max
        "min_accuracy": float(evaluation.accuracy.min()) if evaluation else nan,
        "max_accuracy": float(evaluation.accuracy.max()) if evaluation else nan,
        "train_loss": train_loss,
        "test_loss": float(evaluation.loss.mean()) if evaluation else nan,
        "consensus_distance": evaluation.consensus_distance if evaluation else nan,
        "delivered_links": delivered,
    }


def device_table(shards: list[np.ndarray], labels: np.ndarray, final: Evaluation | None) -> pd.DataFrame:
    return pd.DataFrame({
        "device": range(len(shards)),
        "samples": [len(s) for s in shards],
        "classes": [len(np.unique(labels[s])) for s in shards],
        "final_accuracy": final.accuracy.numpy() if final is not None else np.nan,
    })
