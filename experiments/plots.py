"""Plots drawn from result CSVs only, so they can be redrawn without rerunning anything."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_accuracy(metrics: pd.DataFrame, path: Path, title: str = "") -> None:
    """Mean test accuracy with the min-max band across devices, against rounds and simulated seconds."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, column, label in ((axes[0], "round", "round"), (axes[1], "sim_time_s", "simulated seconds")):
        axis.plot(metrics[column], metrics["mean_accuracy"], label="mean over devices")
        axis.fill_between(metrics[column], metrics["min_accuracy"], metrics["max_accuracy"], alpha=0.25,
                          label="min-max over devices")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

