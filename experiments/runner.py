"""One run: config -> link trace -> rounds of training -> results/<run-id>/.

The round loop reads like the round contract in design.md: compute, exchange,
aggregate (inside ``algorithm.step``), advance the simulated clock, evaluate.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bridge import link_stats, open_links
from experiments.config import ConfigError, RunConfig
from experiments.plots import plot_accuracy
from experiments.run_writer import RunWriter
from learner.allocator import keep_freed_memory
from learner.algorithms import Algorithm
from learner.data import Dataset, dirichlet_partition, load_dataset
from learner.devices import Devices, Evaluation
from learner.models import BatchedModel, build_model

CSV_FLOAT_FORMAT = "%.8g"


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    metrics: pd.DataFrame
    status: str  # "done" or "diverged"
    trace_reused: bool

    @property
    def final_accuracy(self) -> float:
        return float(self.metrics["mean_accuracy"].iloc[-1])


@dataclass(frozen=True)
class Setup:
    """Everything a run builds from its config before the first round."""

    dataset: Dataset
    shards: list[np.ndarray]
    model: BatchedModel
    devices: Devices
    algorithm: Algorithm

    @property
    def payloads(self) -> tuple[int, ...]:
        return tuple(self.algorithm.exchange_payloads(self.model.dim))


def prepare(config: RunConfig) -> Setup:
    dataset = load_dataset(config.data.dataset, config.data.test_fraction, config.seed, config.data.root)
    shards = dirichlet_partition(dataset.y_train, config.devices, config.data.alpha, config.seed)
    model = build_model(config.model.name, dataset.num_features, dataset.num_classes, config.model.hidden,
                        dataset.image_shape)
    devices = Devices(model, dataset, shards, config.data.batch_size, config.seed)
    return Setup(dataset, shards, model, devices, config.algorithm.build())


def trace_request(config: RunConfig) -> tuple:
    """The arguments of ``obtain_trace`` this run needs (runs with equal requests share one trace)."""
    return (config.network.link_model, config.scenario, prepare(config).payloads, config.rounds, config.seed)


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
    with single_threaded():
        return _run(config, Path(results_root), Path(cache_dir), log, progress)


def _run(config: RunConfig, results_root: Path, cache_dir: Path, log: Callable[[str], None],
         progress: bool) -> RunResult:
    started = time.perf_counter()
    clock = PhaseClock()
    try:
        with clock("setup"):  # data, partition, model, algorithm
            setup = prepare(config)
    except ValueError as error:  # settings that only the data can refute, e.g. more devices than samples
        raise ConfigError(str(error)) from error
    model, devices, algorithm = setup.model, setup.devices, setup.algorithm
    payloads = setup.payloads
    log(f"[nsdml] link trace: {config.network.link_model}, {config.devices} devices, density "
        f"{config.scenario.density}, {config.rounds} rounds x {len(payloads)} exchange(s) of {payloads} bytes")
    with clock("links"):
        source = open_links(config.network.mode, config.network.link_model, config.scenario, payloads,
                            config.rounds, config.seed, cache_dir, config.network.worker_timeout_s)
    trace = source.trace
    log(f"[nsdml] {source.describe()}: idle density {trace.meta.get('idle_density', float('nan')):.3f}")

    with clock("io"):
        writer = RunWriter(results_root / config.run_id, config.to_toml(), {"network_mode": config.network.mode})
    bar = tqdm(total=config.rounds, desc=config.run_id, unit="round", disable=not progress, file=sys.stderr)
    try:
        x = model.init(config.devices, config.seed)
        state = algorithm.init(x, seed=config.seed, model=model)
        clock_s = 0.0
        status = "done"
        with clock("evaluation"):
            evaluation = devices.evaluate(x)
        metric_rows = [metrics_row(0, clock_s, evaluation, train_loss=math.nan, delivered=0)]
        with clock("io"):
            writer.add_round(metric_rows[0], [])
        for round_index in range(config.rounds):
            losses: list[torch.Tensor] = []

            def grad_with_loss(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                with clock("training"):
                    grad, loss = devices.gradients(params)
                losses.append(loss)
                return grad, loss

            def grad_fn(params: torch.Tensor) -> torch.Tensor:
                return grad_with_loss(params)[0]

            grad_fn.with_loss = grad_with_loss  # type: ignore[attr-defined]  # for gradients_and_losses

            links = source.round_links(round_index)
            with clock("step"):  # training (inside grad_fn), exchanges and aggregation
                x, state = algorithm.step(x, state, grad_fn, links)
            clock_s += len(losses) * config.network.compute_s_per_step + links.duration_s
            if not torch.isfinite(x).all():
                status = "diverged"
                log(f"[nsdml] diverged at round {round_index + 1}: non-finite parameters")
                break
            delivered = sum(int(trace.delivered(round_index, e).sum()) for e in range(links.used))
            train_loss = float(torch.stack(losses).mean()) if losses else float("nan")
            evaluated = (round_index + 1) % config.eval_every == 0 or round_index + 1 == config.rounds
            with clock("evaluation"):
                evaluation = devices.evaluate(x) if evaluated else None
            metric_rows.append(metrics_row(round_index + 1, clock_s, evaluation, train_loss, delivered))
            with clock("io"):
                writer.add_round(metric_rows[-1], link_stats(trace, round_index, links.used))
            bar.update()
            bar.set_postfix(accuracy=f"{metric_rows[-1]['mean_accuracy']:.4f}")
    except KeyboardInterrupt:
        writer.finish("interrupted", wall_seconds=round(time.perf_counter() - started, 3))
        raise
    finally:
        bar.close()
    reused = source.finish()
    metrics = pd.DataFrame(metric_rows)
    final = evaluation if status == "done" else None  # the last round is always evaluated
    with clock("io"):
        writer.write_text("devices.csv", device_table(setup.shards, setup.dataset.y_train, final).to_csv(
            index=False, float_format=CSV_FLOAT_FORMAT))
        plot_accuracy(metrics, writer.run_dir / "accuracy.png", title=f"{config.algorithm.name}: {config.run_id}")
    details = {"diverged_at_round": writer.rounds_completed + 1} if status == "diverged" else {}
    writer.finish(status, wall_seconds=round(time.perf_counter() - started, 3), trace_reused=reused,
                  trace_meta={k: v for k, v in source.trace.meta.items() if not isinstance(v, dict)},
                  wall_split_s=clock.split(), **details)
    return RunResult(writer.run_dir, metrics, status, reused)


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
        "mean_accuracy": float(evaluation.accuracy.mean()) if evaluation else nan,
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
