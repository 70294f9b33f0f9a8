"""One run: config -> link trace -> rounds of training -> results/<run-id>/.

The round loop reads like the round contract (experiments/design.md): links of the
round (without devices whose battery is empty), the algorithm's step (compute,
exchange, aggregate), the simulated clock and energy, the divergence check,
the log, a checkpoint when one is due. Timing, progress and files live behind
``RunRecorder``; the gradient callable is a ``GradientOracle``; every call
into the algorithm goes through ``experiments.run.contract``. An interrupted run
resumes from its last checkpoint (``experiments.run.checkpoint``).
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from inspect import signature
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from bridge import link_stats, open_links, trace_key
from bridge.link_models import LINK_MODELS
from experiments.config import ConfigError, RunConfig, passes_multiple, prefixed
from experiments.run import checkpoint, interrupts
from experiments.run.async_loop import run_asynchronously
from experiments.run.checkpoint import Checkpoint, csv_marks
from experiments.run.compute import step_times
from experiments.run.contract import checked_init, checked_step
from experiments.run.energy import EnergyMeter, round_zero_columns
from experiments.run.fingerprint import run_fingerprint
from experiments.run.machine import code_commit, machine_record, resident_mb
from experiments.run.progress import TraceProgress, progress_bar
from experiments.run.run_log import RunLogging, run_logging
from experiments.run.run_outputs import device_rows, write_end_files
from experiments.run.run_writer import FINISHED, RunWriter, reusable, run_lock, run_record, run_status, stale_because
from learner.allocator import keep_freed_memory
from learner.byzantine import (MESSAGE_ATTACKS, TRAINING_ATTACKS, SignFlippingDevices, byzantine_devices,
                               flip_labels)
from learner.algorithms.base import DeclaredLinks
from learner.algorithms.registry import Algorithm
from learner.data import Dataset, load_dataset, partition
from learner.devices import Devices, Evaluation
from learner.models import BatchedModel, build_model
from learner.server import is_server
from messages.ledger import Power
from messages.schedules import SCHEDULES, Plan



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


def byzantine_setup(config: RunConfig, setup: Setup, trace, log: Callable[[str], None]
                    ) -> tuple[Devices, Callable[[int], Callable] | None, torch.Tensor]:
    """The Byzantine devices (``learner.byzantine``): the devices (their data or gradients poisoned under a
    training attack), the round -> message-forging function (None under a training attack: they send
    honestly) and the honest mask.
    A random attack's draws are keyed by (seed, round), so a resumed run forges the same values."""
    spec, n = config.byzantine, config.devices
    degree = trace.idle_delivered[:n, :n].sum(1) if spec.placement == "degree" else None
    chosen = byzantine_devices(n, spec.fraction, (), spec.placement, config.seed, degree)
    bad = torch.from_numpy(chosen)
    log(f"[nsdml] Byzantine devices ({spec.attack}, {spec.placement}): "
        f"{', '.join(map(str, np.flatnonzero(chosen)))}; the run's figures count the other {n - int(chosen.sum())}")
    if spec.attack in TRAINING_ATTACKS:  # they learn from poisoned data or gradients and send what they learn
        data = setup.dataset
        if spec.attack == "label_flip":
            labels = data.y_train.copy()
            for device in np.flatnonzero(chosen):
                labels[setup.shards[device]] = flip_labels(labels[setup.shards[device]], data.num_classes)
            return Devices(setup.model, replace(data, y_train=labels), setup.shards, config.data.batch_size,
                           config.seed), None, ~bad
        return SignFlippingDevices(setup.model, data, setup.shards, config.data.batch_size, config.seed,
                                   byzantine=bad, strength=spec.strength), None, ~bad
    attack = MESSAGE_ATTACKS[spec.attack]

    def tamper_for(round_index: int) -> Callable:
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + round_index)
        return lambda values, mask: attack(values, mask, bad, spec.strength, generator)

    return setup.devices, tamper_for, ~bad


def trace_request(config: RunConfig) -> dict:
    """The arguments of ``obtain_trace`` (and ``trace_key``) this run needs; runs with equal requests share
    one trace."""
    plan = barrier_plan(config, step_times(config.network, config.devices, config.seed))
    return {"link_model": config.network.link_model, "scenario": config.scenario, "payload_bytes": config.payloads,
            "rounds": config.rounds if plan is None else plan.steps, "seed": config.seed, "barrier": plan}


def barrier_plan(config: RunConfig, step_s: np.ndarray) -> Plan | None:
    """The message-core schedule's plan for this run (``messages.schedules``; None under rounds)."""
    return SCHEDULES[config.network.schedule].plan_for(config, step_s)


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
    with single_threaded(), run_logging(log) as run_log:
        log = run_log.log
        try:
            with recorder.phase("setup"):  # data, partition, model
                setup = prepare(config)
        except ValueError as error:  # settings that only the data can refute, e.g. more devices than samples
            raise ConfigError(prefixed(str(error), "data.")) from error
        with run_lock(results_root, config.run_id, on_wait=log):
            if reusable(run_dir, fingerprint):  # another process finished it while this one waited
                return _reused(run_dir)
            details = {"code_fingerprint": fingerprint, "code_commit": code_commit(), "machine": machine_record(),
                       "network_mode": config.network.mode, "trace_key": trace_key(**trace_request(config))}
            if run_status(run_dir) in FINISHED:
                details["recomputed_because"] = stale_because(run_dir, fingerprint)
            elif (run_dir / "run.json").is_file() and not run_record(run_dir):
                details["recomputed_because"] = "run.json is damaged (not a readable record)"
            if "recomputed_because" in details:
                log(f"[nsdml] recomputing {config.run_id}: {details['recomputed_because']}")
            return _run(config, setup, recorder, run_dir, Path(cache_dir), details, run_log)


def round_line(row: dict) -> str:
    """One round as run.log's DEBUG line says it."""
    accuracy = row.get("mean_accuracy", math.nan)
    return (f"round {row['round']}: clock {row['sim_time_s']:.3f} s, {row['cumulative_energy_j']:.1f} J, "
            f"local steps {row['local_steps']}, mean accuracy " + ("not evaluated" if accuracy != accuracy
                                                                   else f"{accuracy:.4f}"))


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


class KeyedGradientOracle(GradientOracle):
    """The asynchronous engine's oracle: device j's c-th gradient evaluation uses its c-th keyed mini-batch
    (``Devices.keyed_batch``), the one the synchronous schedules give it at its c-th evaluation, however the
    engine groups the devices' steps into levels. ``begin(active)`` before each level: only the devices
    stepping in it advance their count, and only their gradients are computed (the others' rows are zero:
    an asynchronous algorithm's local steps leave every other device unchanged, ``sgd_steps``), so a level
    costs as many gradients as it has steps."""

    def __init__(self, devices: Devices, recorder: "RunRecorder"):
        super().__init__(devices, recorder)
        self.counts = np.zeros(devices.num_devices, dtype=np.int64)
        self._active = np.ones(devices.num_devices, dtype=bool)

    def begin(self, active: np.ndarray) -> None:
        self._active = np.asarray(active, dtype=bool)

    def with_loss(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stepping = np.flatnonzero(self._active)
        grad, loss = torch.zeros_like(params), torch.zeros(params.shape[0], dtype=params.dtype)
        if len(stepping):
            with self._recorder.phase("training"):
                grad[stepping], loss[stepping] = self._devices.keyed_gradients(params[stepping],
                                                                               self.counts[stepping], stepping)
        self.counts[self._active] += 1
        self.losses.append(torch.where(torch.from_numpy(self._active), loss, torch.nan))
        return grad, loss


def _run(config: RunConfig, setup: Setup, recorder: "RunRecorder", run_dir: Path, cache_dir: Path, details: dict,
         run_log: RunLogging) -> RunResult:
    log = run_log.log
    model, devices, algorithm = setup.model, setup.devices, setup.algorithm
    log(f"[nsdml] link trace: {config.network.link_model}, {config.devices} devices, density "
        f"{config.scenario.density}, {config.rounds} rounds x {len(config.payloads)} exchange(s) of "
        f"{' + '.join(f'{size:,}' for size in config.payloads)} bytes")
    network = config.network
    step_s = step_times(network, config.devices, config.seed)  # each device's seconds per local step
    barrier = barrier_plan(config, step_s)
    try:
        with recorder.phase("links"):
            source = open_links(config.network.mode, config.network.link_model, config.scenario, config.payloads,
                                config.rounds, config.seed, cache_dir, config.network.worker_timeout_s,
                                TraceProgress("ns-3 trace", log, enabled=recorder.progress), barrier)
    except OSError as error:
        raise TraceCacheError(f"cannot use the link-trace cache {cache_dir}: {error.strerror or error} "
                              f"({error.filename or cache_dir})") from error
    if LINK_MODELS[network.link_model].placed:
        log(f"[nsdml] {source.describe()}: idle density {source.trace.meta.get('idle_density', float('nan')):.3f}")
    else:  # no positions: the idle probe finds every pair in range, which is not the graph the model draws
        log(f"[nsdml] {source.describe()}: no placement, so every pair may connect; which pairs deliver is the "
            f"link model's draw (links.csv's measured_density)")
    tamper_for = None
    if config.byzantine.active:
        devices, tamper_for, recorder.honest = byzantine_setup(config, setup, source.trace, log)
    name = config.algorithm.name
    if SCHEDULES[network.schedule].algorithm_kind == "asynchronous":  # own clocks, no rounds (async_loop.py)
        recorder.open(run_dir, details)
        run_log.start(run_dir)
        try:
            status = run_asynchronously(config, model, devices, algorithm, source.trace, step_s, recorder,
                                        KeyedGradientOracle(devices, recorder), log)
            reused = source.finish()
            recorder.finish(status, setup, source.trace, reused,
                            energy_total_j=float(recorder.metric_rows[-1]["cumulative_energy_j"]))
        except KeyboardInterrupt:
            recorder.close("interrupted")
            raise
        except Exception as error:
            recorder.close("failed", error=f"{type(error).__name__}: {error}")
            raise
        return RunResult(run_dir, pd.DataFrame(recorder.metric_rows), status, reused)
    saved = _checkpoint_to_resume(config, run_dir, details, algorithm, log)
    recorder.open(run_dir, details, saved)
    run_log.start(run_dir)
    oracle = GradientOracle(devices, recorder)
    meter = EnergyMeter(source.trace, config.devices, Power.of(config.scenario, network.compute_power_w), step_s,
                        network.battery_j, config.scenario.radio_sleep)
    server_s = network.server_compute_s if is_server(algorithm) else 0.0
    checkpoints = Checkpoints(config, run_dir, details["code_fingerprint"], log)
    status, clock_s, local_steps, exchanges, first = "done", 0.0, 0, 0, 0
    try:
        if saved is None:
            x = model.init(config.devices, config.seed)
            state = checked_init(name, algorithm, x, seed=config.seed, model=model,
                                 **sample_counts(algorithm, setup.shards))
            recorder.add_round(0, clock_s, local_steps, recorder.evaluate(devices, x), math.nan, source.trace, None,
                               round_zero_columns(config.devices), meter.device_columns())
        else:  # resumed: the rounds up to the checkpoint are in the CSVs already
            x, state, clock_s, exchanges, first = saved.x, saved.state, saved.clock_s, saved.exchanges, saved.round
            local_steps = int(saved.metric_rows[-1]["local_steps"])
            devices.batch_generator_state = saved.batch_generator
            meter.restore(saved.meter)
        for round_index in range(first, config.rounds):
            interrupts.check()
            links = meter.links(source.round_links(round_index))
            oracle.new_round()
            with recorder.phase("step"):  # compute (oracle calls), exchanges and aggregation
                x_next, state = checked_step(name, algorithm, x, state, oracle,
                                             DeclaredLinks(links, config.messages, config.devices,
                                                           tamper_for and tamper_for(round_index)))
            exchanges += links.used
            x = meter.hold_dead(x, x_next)
            previous_clock_s = clock_s
            if barrier is None:  # rounds: the slowest live device's compute, then the exchanges' window
                clock_s += oracle.calls * meter.slowest_step_s(step_s) + links.duration_s + server_s
                energy = meter.charge_round(round_index, oracle.calls * meter.slowest_step_s(step_s) + server_s,
                                            links.windows_s, oracle.calls)
            else:  # the schedule ran compute on the network's clock: the step ends when its last device does
                if oracle.calls != 1:
                    raise RunFailed(f"schedule = \"local_barrier\" times one gradient evaluation per step; "
                                    f"{name} made {oracle.calls} in round {round_index + 1}")
                clock_s = max(clock_s, source.trace.step_end_s(round_index, meter.alive))
                energy = meter.charge_step(round_index, oracle.calls)
            if not torch.isfinite(x).all():
                status = "diverged"
                log(f"[nsdml] diverged at round {round_index + 1}: non-finite parameters")
                break
            local_steps += oracle.calls
            evaluated = config.evaluated(round_index + 1, previous_clock_s, clock_s)
            evaluation = recorder.evaluate(devices, x) if evaluated else None
            recorder.add_round(round_index + 1, clock_s, local_steps, evaluation, oracle.mean_loss, source.trace,
                               links, energy, meter.device_columns())
            run_log.debug(round_line(recorder.metric_rows[-1]))
            if checkpoints.due(round_index + 1, previous_clock_s, clock_s):
                with recorder.phase("io"):
                    checkpoints.save(Checkpoint(round_index + 1, clock_s, exchanges, x, state,
                                                devices.batch_generator_state, meter.snapshot(),
                                                recorder.metric_rows, csv_marks(run_dir)))
        reused = source.finish()
        warnings = list(checkpoints.warnings)
        if exchanges == 0 and not is_server(algorithm):  # allowed (a local-training baseline), rarely meant
            warnings.append(f"algorithm {name} never called links.exchange: no device heard another")
            log(f"[nsdml] warning: {warnings[-1]}")
        extra = {"battery_died_round": meter.died_round} if network.battery_j > 0 else {}
        if warnings:
            extra["warnings"] = warnings
        recorder.finish(status, setup, source.trace, reused, energy_total_j=float(meter.spent_j.sum()), **extra)
    except KeyboardInterrupt:
        recorder.close("interrupted")
        raise
    except Exception as error:  # the run is marked failed, never left "running" when the disk lets us say so
        reason = "out of memory" if isinstance(error, MemoryError) else f"{type(error).__name__}: {error}"
        try:
            recorder.close("failed", error=reason)
        except OSError:  # e.g. the disk is full: run.json still says "running", which the next call redoes
            pass
        if isinstance(error, MemoryError):
            raise RunFailed(f"run {config.run_id} ran out of memory at round {recorder.rounds_completed + 1}; "
                            f"lower rounds, devices or the model size") from error
        raise
    checkpoint.remove(run_dir)  # the finished files are the record now
    return RunResult(run_dir, pd.DataFrame(recorder.metric_rows), status, reused)


def _checkpoint_to_resume(config: RunConfig, run_dir: Path, details: dict, algorithm,
                          log: Callable[[str], None]) -> Checkpoint | None:
    """The checkpoint an interrupted run of this config and code left, if it can be used (else None, and
    the run starts from round 0)."""
    if not (run_dir / checkpoint.FILE).is_file() or run_status(run_dir) in FINISHED:
        return None
    identity = {"run_id": config.run_id, "code_fingerprint": details["code_fingerprint"]}
    try:
        saved = checkpoint.load(run_dir, identity, algorithm)
        checkpoint.cut_back(run_dir, saved.csv)  # checked here, so a mismatch restarts instead of failing
    except checkpoint.CheckpointError as error:
        log(f"[nsdml] not resuming {config.run_id} from its checkpoint: {error}; starting from round 0")
        return None
    log(f"[nsdml] resuming {config.run_id} from its checkpoint at round {saved.round}")
    details["resumed_from_round"] = saved.round
    return saved


class Checkpoints:
    """When to save a checkpoint (every ``checkpoint_every`` rounds and/or when the simulated clock passes a
    multiple of ``checkpoint_every_s``; never after the last round) and saving it. A state that cannot be
    stored as data turns checkpoints off for the run, with a warning."""

    def __init__(self, config: RunConfig, run_dir: Path, fingerprint: str, log: Callable[[str], None]):
        self._config, self._run_dir, self._log = config, run_dir, log
        self._identity = {"run_id": config.run_id, "code_fingerprint": fingerprint}
        self.warnings: list[str] = []

    def due(self, rounds_done: int, previous_clock_s: float, clock_s: float) -> bool:
        every, every_s = self._config.checkpoint_every, self._config.checkpoint_every_s
        if not self._config.checkpoints or self.warnings or rounds_done >= self._config.rounds:
            return False
        return bool((every and rounds_done % every == 0)
                    or (every_s and passes_multiple(previous_clock_s, clock_s, every_s)))

    def save(self, saved: Checkpoint) -> None:
        try:
            checkpoint.save(self._run_dir, saved, self._identity)
        except checkpoint.CheckpointError as error:
            self.warnings.append(f"checkpoints off: the algorithm's state cannot be stored as data ({error})")
            self._log(f"[nsdml] warning: {self.warnings[-1]}")


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
        self.honest: torch.Tensor | None = None  # (N,) bool when some devices are Byzantine
        # The most resident memory seen at a round's end: this run's peak, not the process's (a pool's process
        # runs many runs, so the kernel's lifetime maximum would mix them).
        self.peak_resident_mb = resident_mb()

    def phase(self, name: str):
        return self._clock(name)

    @property
    def progress(self) -> bool:
        """Whether progress is shown (bars on a terminal, log lines elsewhere); off with --quiet."""
        return self._progress

    @property
    def rounds_completed(self) -> int:
        return self._writer.rounds_completed if self._writer else 0

    def open(self, run_dir: Path, details: dict, saved: Checkpoint | None = None) -> None:
        """A new run directory, or (``saved``) the interrupted one, cut back to the checkpoint's round."""
        resume = None if saved is None else (saved.round, saved.csv)
        with self.phase("io"):
            self._writer = RunWriter(run_dir, self._config.to_toml(), details, expected_rounds=self._config.rounds,
                                     resume=resume)
        if saved is not None:
            self.metric_rows = list(saved.metric_rows)
        self._bar = progress_bar(self._config.rounds, self._config.run_id, "round", self._progress,
                                 initial=0 if saved is None else saved.round)

    def evaluate(self, devices: Devices, x: torch.Tensor) -> Evaluation:
        """Every device's test figures; the run's means count the honest devices (``honest``) only."""
        with self.phase("evaluation"):
            self.last_evaluation = devices.evaluate(x, honest=self.honest)
        return self.last_evaluation

    def add_round(self, round_index: int, clock_s: float, local_steps: int, evaluation: Evaluation | None,
                  train_loss: float, trace, links, energy: dict, ledger: list[dict]) -> None:
        used = links.used if links is not None else 0
        delivered = links.delivered if links is not None else 0  # in the masks the algorithm saw
        row = {**metrics_row(round_index, clock_s, local_steps, evaluation, train_loss, delivered), **energy}
        self.metric_rows.append(row)
        self.peak_resident_mb = max(self.peak_resident_mb, resident_mb())
        with self.phase("io"):
            rows = link_stats(trace, round_index - 1, used, self._config.devices) if used else []
            self._writer.add_round(row, rows, device_rows(round_index, clock_s, local_steps, evaluation, ledger))
        if round_index > 0:
            self._bar.update()
            if row["mean_accuracy"] == row["mean_accuracy"]:
                self._bar.set_postfix(accuracy=f"{row['mean_accuracy']:.4f}")

    def write_text(self, name: str, text: str) -> None:
        with self.phase("io"):
            self._writer.write_text(name, text)

    def close(self, status: str, **details) -> None:
        """End an unfinished run (interrupted or failed): its rows are kept, its status says why."""
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.finish(status, wall_seconds=self._wall(), **details)

    def finish(self, status: str, setup: Setup, trace, trace_reused: bool, **energy) -> None:
        self._bar.close()
        final = self.last_evaluation if status == "done" else None  # the last round is always evaluated
        writer = self._writer
        with self.phase("io"):
            write_end_files(writer, self._config, setup.shards, setup.dataset.y_train, trace, final,
                            self.metric_rows)
        trace_meta = trace.meta
        details = {"diverged_at_round": writer.rounds_completed + 1} if status == "diverged" else {}
        writer.finish(status, wall_seconds=self._wall(), trace_reused=trace_reused,
                      trace_meta={k: v for k, v in trace_meta.items() if not isinstance(v, dict)},
                      wall_split_s=self._clock.split(), peak_resident_mb=round(self.peak_resident_mb, 1),
                      **energy, **details)

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


def metrics_row(round_index: int, clock_s: float, local_steps: int, evaluation: Evaluation | None,
                train_loss: float, delivered: int) -> dict:
    """One round's row; a round that was not evaluated (``eval_every``) leaves the test columns empty (NaN).
    ``local_steps``: the local steps (gradient evaluations) each device has taken so far."""
    nan = math.nan
    return {
        "round": round_index,
        "sim_time_s": clock_s,
        "local_steps": local_steps,
        "mean_accuracy": float(evaluation.counted(evaluation.accuracy).double().mean()) if evaluation else nan,
        "min_accuracy": float(evaluation.counted(evaluation.accuracy).min()) if evaluation else nan,
        "max_accuracy": float(evaluation.counted(evaluation.accuracy).max()) if evaluation else nan,
        "train_loss": train_loss,
        "test_loss": float(evaluation.counted(evaluation.loss).mean()) if evaluation else nan,
        "consensus_distance": evaluation.consensus_distance if evaluation else nan,
        "delivered_links": delivered,
    }
