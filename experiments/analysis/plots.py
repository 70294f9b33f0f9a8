"""Plots drawn from result CSVs only, so they can be redrawn without rerunning anything."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
import pandas as pd  # noqa: E402

from bridge.link_models import LINK_MODELS  # noqa: E402


LINK_MODEL = "network.link_model"
SCHEDULE = "network.schedule"


def line_style(link_model: str):
    """The link model's own line (bridge/link_models.py); "-." for one this code does not know (older runs)."""
    return LINK_MODELS[link_model].style if link_model in LINK_MODELS else "-."


SETTING = (("devices", "N"), ("network.density", "density"), ("data.alpha", "alpha"))


def link_models_title(summary: pd.DataFrame) -> str:
    """Every sweep figure says which link model(s) made it (ns-3 or a control, never left implicit) and the
    devices, density and Dirichlet alpha its runs share (a swept one is in the panels or the legend)."""
    models = sorted(summary[LINK_MODEL].dropna().unique()) if LINK_MODEL in summary else []
    parts = ["link model: " + ", ".join(map(str, models))] if models else []
    schedules = summary[SCHEDULE].dropna().unique() if SCHEDULE in summary else []
    if len(schedules) == 1:
        parts.append(f"schedule {schedules[0]}")
    for column, label in SETTING:
        values = summary[column].dropna().unique() if column in summary else []
        if len(values) == 1:
            parts.append(f"{label} {values[0]}")
    return "; ".join(parts)


def plot_accuracy(metrics: pd.DataFrame, path: Path, title: str = "") -> None:
    """Mean test accuracy with the min-max band across devices, against rounds and simulated seconds, on a
    fixed 0-1 axis so that two runs' figures compare by eye."""
    metrics = metrics.dropna(subset=["mean_accuracy"])  # rounds without evaluation (eval_every > 1)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, column, label in ((axes[0], "round", "round"), (axes[1], "sim_time_s", "simulated seconds")):
        axis.plot(metrics[column], metrics["mean_accuracy"], label="mean over devices")
        axis.fill_between(metrics[column], metrics["min_accuracy"], metrics["max_accuracy"], alpha=0.25,
                          label="min-max over devices")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylim(0.0, 1.0)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(loc="lower right")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_devices(device_metrics: pd.DataFrame, path: Path, title: str = "") -> None:
    """Every device's test accuracy at each evaluation (thin lines), their median and 10-90 % band: the spread
    that non-IID data opens between devices; on the right each device's final accuracy against its own."""
    wide = device_metrics.pivot(index="round", columns="device", values="accuracy")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    left.plot(wide.index, wide.values, color="grey", linewidth=0.5, alpha=0.5)
    left.fill_between(wide.index, wide.quantile(0.1, axis=1), wide.quantile(0.9, axis=1), alpha=0.3,
                      label="10-90 % of devices")
    left.plot(wide.index, wide.median(axis=1), label="median device")
    left.set(xlabel="round", ylabel="test accuracy", ylim=(0.0, 1.0))
    left.grid(alpha=0.3)
    left.legend(loc="lower right", fontsize=8)
    final = wide.iloc[-1]
    right.bar(final.index.astype(str), final.values)
    right.set(xlabel="device", ylabel=f"accuracy at round {int(wide.index[-1])}", ylim=(0.0, 1.0))
    right.tick_params(axis="x", labelsize=6, rotation=90)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def heard_pairs(rates) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs i < j that delivered at least once, from an (n, n) matrix of delivery rates (NaN: never
    tried): their indices, the better direction's rate, and whether only one direction ever delivered."""
    rates = np.nan_to_num(np.asarray(rates, dtype=float), nan=0.0)
    i, j = np.triu_indices(len(rates), k=1)
    forward, backward = rates[i, j], rates[j, i]
    heard = (forward > 0) | (backward > 0)
    forward, backward = forward[heard], backward[heard]
    return i[heard], j[heard], np.maximum(forward, backward), (forward == 0) | (backward == 0)


def plot_topology(positions: pd.DataFrame, rates, path: Path, title: str = "") -> None:
    """Where the devices are (at the first round) and who heard whom: one segment per pair that delivered at
    least once, coloured by the pair's delivery rate over the run (the better direction of the two, scale on
    the right); dashed where only one direction ever delivered. Drawn as one collection, so 1,000 devices take
    seconds; the access point as a square."""
    first = positions[positions["round"] == positions["round"].min()].set_index("node").sort_index()
    n = len(first)
    i, j, rate, one_way = heard_pairs(rates)
    xy = first[["x_m", "y_m"]].to_numpy()
    figure, axis = plt.subplots(figsize=(7, 6))
    scale = plt.Normalize(0.0, 1.0)
    for mask, dashes in ((~one_way, "solid"), (one_way, (0, (3, 2)))):
        if mask.any():
            segments = np.stack([xy[i[mask]], xy[j[mask]]], axis=1)
            axis.add_collection(LineCollection(segments, array=rate[mask], cmap="viridis", norm=scale,
                                               linewidths=0.8, linestyles=dashes, alpha=0.8))
    figure.colorbar(plt.cm.ScalarMappable(norm=scale, cmap="viridis"), ax=axis,
                    label="pair's delivery rate over the run (better direction)")
    devices = first[first["role"] == "device"]
    axis.scatter(devices["x_m"], devices["y_m"], s=40 if n <= 100 else 6, color="black", zorder=3, label="device")
    if n <= 100:  # numbers are legible up to about a hundred devices
        for node, row in devices.iterrows():
            axis.annotate(str(node), (row["x_m"], row["y_m"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    server = first[first["role"] == "access_point"]
    if len(server):
        axis.scatter(server["x_m"], server["y_m"], s=120, marker="s", color="tab:red", zorder=3,
                     label="access point")
    axis.plot([], [], color="grey", linestyle="--", label=f"one-way only ({int(one_way.sum())} of {len(i)} pairs)")
    axis.set(xlabel="x (m)", ylabel="y (m)", aspect="equal")
    axis.autoscale()
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_link_density(summary: pd.DataFrame, links: dict[str, Path], out_dir: Path) -> None:
    """Measured link density (links.csv's ``measured_density``: delivered pairs / N(N-1), or / N through an
    access point) per round, mean over the runs of each target."""
    done = summary[summary["status"].isin(("done", "diverged"))]
    if done.empty:
        return
    figure, axis = plt.subplots(figsize=(6, 4))
    for (target, devices, model), group in done.groupby(["network.density", "devices", LINK_MODEL], sort=True):
        frames = [pd.read_csv(links[run_id]) for run_id in group["run_id"]]
        first = pd.concat([f[f["exchange"] == 0].set_index("round")["measured_density"] for f in frames], axis=1)
        axis.plot(first.index, first.mean(axis=1), linestyle=line_style(model),
                  label=f"{model}: target {target}, {devices} devices")
    axis.set_xlabel("round")
    axis.set_ylabel("measured link density (first exchange)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(link_models_title(done), fontsize=9)
    figure.tight_layout()
    figure.savefig(Path(out_dir) / "link_density.png", dpi=100)
    plt.close(figure)


def plot_bytes_per_algorithm(summary: pd.DataFrame, out_dir: Path) -> None:
    """Traffic per run by algorithm: bytes on air where ns-3 measured it, else application bytes sent."""
    done = summary[summary["status"].isin(("done", "diverged"))]
    if done.empty:
        return
    column = "bytes_on_air" if "bytes_on_air" in done and done["bytes_on_air"].notna().any() else "bytes_sent"
    means = done.groupby(["algorithm.name", LINK_MODEL], sort=False)[column].mean() / 1e6
    figure, axis = plt.subplots(figsize=(max(4, 1.2 * len(means)), 4))
    axis.bar([f"{name}\n{model}" for name, model in means.index], means.values)
    same = len(means) > 1 and np.allclose(means.values, means.values[0], rtol=1e-9)
    axis.set_title(link_models_title(done) + ("\n(every algorithm sends the same bytes here)" if same else ""),
                   fontsize=9)
    axis.set_ylabel(f"{column.replace('_', ' ')} per run (MB)")
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(Path(out_dir) / "bytes_per_algorithm.png", dpi=100)
    plt.close(figure)
