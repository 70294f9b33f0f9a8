"""``nsdml tensorboard RUN_OR_SWEEP... [--out DIR]``: finished runs as TensorBoard event files.

One directory per run (its run id) under ``--out`` (default ``results/tensorboard``), written with
``torch.utils.tensorboard``: every metrics.csv column as a scalar against the round (``<column>``), the mean
accuracy also against simulated milliseconds (``mean_accuracy/by_sim_ms``) and millijoules spent by all devices
(``mean_accuracy/by_energy_mj``), since a TensorBoard step is an integer; and the resolved config as hparams
with the final and best accuracy as their metrics. Rounds a run did not evaluate carry no accuracy point.
An export replaces that run's earlier export (no duplicated points). Read it with ``tensorboard --logdir DIR``.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd

from experiments.analysis.compare import comparable, run_dirs_of
from experiments.analysis.listing import flat_config

CLOCKED = (("mean_accuracy/by_sim_ms", "sim_time_s"), ("mean_accuracy/by_energy_mj", "cumulative_energy_j"))


def hparams(config: dict) -> dict:
    """The config fields TensorBoard's hparams take (numbers, strings, booleans)."""
    return {field: value for field, value in config.items() if isinstance(value, (bool, int, float, str))}


def export_run(run_dir: Path, out: Path) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    target = Path(out) / run_dir.name
    if target.exists():
        shutil.rmtree(target)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    writer = SummaryWriter(str(target))
    try:
        for row in metrics.to_dict("records"):
            step = int(row["round"])
            for column, value in row.items():
                if column != "round" and value == value:  # NaN: not measured this round
                    writer.add_scalar(column, float(value), step)
            if row["mean_accuracy"] == row["mean_accuracy"]:
                for tag, clock in CLOCKED:
                    writer.add_scalar(tag, float(row["mean_accuracy"]), int(round(row[clock] * 1000)))
        evaluated = metrics["mean_accuracy"].dropna()
        figures = {"hparam/final_acc": float(evaluated.iloc[-1]) if len(evaluated) else math.nan,
                   "hparam/max_acc": float(evaluated.max()) if len(evaluated) else math.nan}
        writer.add_hparams(hparams(flat_config(run_dir) or {}), figures, run_name=".")
    finally:
        writer.close()
    return target


def export(paths: list[Path], out: Path) -> list[Path]:
    """Export every finished, intact run the arguments name (run or sweep directories)."""
    return [export_run(run_dir, out) for run_dir in comparable(run_dirs_of(paths))]
