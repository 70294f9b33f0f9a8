"""One run: config -> link trace -> rounds of training -> results/<run-id>/.

The round loop reads like the round contract in design.md: compute, exchange,
aggregate (inside ``algorithm.step``), advance the simulated clock, evaluate.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from bridge import LinkTrace, obtain_trace
from experiments.config import RunConfig
from experiments.plots import plot_accuracy
from learner.data import dirichlet_partition, load_dataset
from learner.devices import Devices, Evaluation
from learner.models import build_model

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


def run_experiment(config: RunConfig, results_root: Path, cache_dir: Path,
                   log: Callable[[str], None] = lambda message: print(message, file=sys.stderr)) -> RunResult:
    started = time.perf_counter()
    dataset = load_dataset(config.data.dataset, config.data.test_fraction, config.seed, config.data.root)
    shards = dirichlet_partition(dataset.y_train, config.devices, config.data.alpha, config.seed)
    model = build_model(config.model.name, dataset.num_features, dataset.num_classes, config.model.hidden,
                        dataset.image_shape)
    devices = Devices(model, dataset, shards, config.data.batch_size, config.seed)
    algorithm = config.algorithm.build()

    payloads = algorithm.exchange_payloads(model.dim)
    log(f"[nsdml] link trace: {config.network.link_model}, {config.devices} devices, density "
        f"{config.scenario.density}, {config.rounds} rounds x {len(payloads)} exchange(s) of {payloads} bytes")
    trace, reused = obtain_trace(config.network.link_model, config.scenario, payloads, config.rounds, config.seed,
                                 cache_dir)
    log(f"[nsdml] {'reused cached trace' if reused else 'simulated new trace'}: idle density "
        f"{trace.meta.get('idle_density', float('nan')):.3f}")

    x = model.init(config.devices, config.seed)
    state = algorithm.init(x, seed=config.seed, model=model)
    clock_s = 0.0
    status = "done"
    metric_rows = [metrics_row(0, clock_s, devices.evaluate(x), train_loss=float("nan"), delivered=0)]
    link_rows = []
    for round_index in range(config.rounds):
        losses: list[torch.Tensor] = []

        def grad_fn(params: torch.Tensor) -> torch.Tensor:
            grad, loss = devices.gradients(params)
            losses.append(loss)
            return grad

        links = trace.round_links(round_index)
        x, state = algorithm.step(x, state, grad_fn, links)
        clock_s += len(losses) * config.network.compute_s_per_step + links.duration_s
        if not torch.isfinite(x).all():
            status = "diverged"
            log(f"[nsdml] diverged at round {round_index + 1}: non-finite parameters")
            break
        delivered = sum(int(trace.delivered(round_index, e).sum()) for e in range(links.used))
        train_loss = float(torch.stack(losses).mean()) if losses else float("nan")
        metric_rows.append(metrics_row(round_index + 1, clock_s, devices.evaluate(x), train_loss, delivered))
        link_rows.extend(link_stats(trace, round_index, links.used))
        if (round_index + 1) % max(1, config.rounds // 10) == 0:
            log(f"[nsdml] round {round_index + 1}/{config.rounds}: mean accuracy "
                f"{metric_rows[-1]['mean_accuracy']:.4f}")

    metrics = pd.DataFrame(metric_rows)
    final = devices.evaluate(x) if status == "done" else None
    run_dir = Path(results_root) / config.run_id
    with _staging(run_dir) as staging:
        (staging / "config.toml").write_text(config.to_toml())
        metrics.to_csv(staging / "metrics.csv", index=False, float_format=CSV_FLOAT_FORMAT)
        pd.DataFrame(link_rows).to_csv(staging / "links.csv", index=False, float_format=CSV_FLOAT_FORMAT)
        device_table(shards, dataset.y_train, final).to_csv(staging / "devices.csv", index=False,
                                                            float_format=CSV_FLOAT_FORMAT)
        plot_accuracy(metrics, staging / "accuracy.png", title=f"{config.algorithm.name}: {config.run_id}")
        (staging / "run.json").write_text(json.dumps({
            "status": status, "rounds_completed": len(metric_rows) - 1, "trace_reused": reused,
            "trace_meta": {k: v for k, v in trace.meta.items() if not isinstance(v, dict)},
            "wall_seconds": round(time.perf_counter() - started, 3),
        }, indent=2, sort_keys=True))
    return RunResult(run_dir, metrics, status, reused)


def metrics_row(round_index: int, clock_s: float, evaluation: Evaluation, train_loss: float, delivered: int) -> dict:
    return {
        "round": round_index,
        "sim_time_s": clock_s,
        "mean_accuracy": float(evaluation.accuracy.mean()),
        "min_accuracy": float(evaluation.accuracy.min()),
        "max_accuracy": float(evaluation.accuracy.max()),
        "train_loss": train_loss,
        "test_loss": float(evaluation.loss.mean()),
        "consensus_distance": evaluation.consensus_distance,
        "delivered_links": delivered,
    }


def link_stats(trace: LinkTrace, round_index: int, exchanges: int) -> list[dict]:
    """Per-exchange link statistics of one round, measured from the trace."""
    n = trace.devices
    intended = n * (n - 1)
    rows = []
    for e in range(exchanges):
        done = trace.done_s[round_index, e]
        delivered = ~np.isnan(done)
        np.fill_diagonal(delivered, False)
        rows.append({
            "round": round_index + 1,
            "exchange": e,
            "payload_bytes": trace.payload_bytes[e],
            "intended_pairs": intended,
            "in_range_pairs": int(trace.idle_delivered.sum()),
            "delivered_pairs": int(delivered.sum()),
            "measured_density": delivered.sum() / intended,
            "mean_completion_s": float(done[delivered].mean()) if delivered.any() else float("nan"),
            "bytes_received": int(trace.rx_bytes[round_index, e].sum()),
        })
    return rows


def device_table(shards: list[np.ndarray], labels: np.ndarray, final: Evaluation | None) -> pd.DataFrame:
    return pd.DataFrame({
        "device": range(len(shards)),
        "samples": [len(s) for s in shards],
        "classes": [len(np.unique(labels[s])) for s in shards],
        "final_accuracy": final.accuracy.numpy() if final is not None else np.nan,
    })


class _staging:
    """Write a run into a hidden sibling directory, then swap it into place in one rename."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def __enter__(self) -> Path:
        self.run_dir.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.run_dir.name}.", dir=self.run_dir.parent))
        return self.path

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        if self.run_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{self.run_dir.name}.old.", dir=self.run_dir.parent))
            os.replace(self.run_dir, retired / "run")
            os.replace(self.path, self.run_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(self.path, self.run_dir)
