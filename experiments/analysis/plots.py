"""Plots drawn from result CSVs only, so they can be redrawn without rerunning anything."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

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


def plot_topology(positions: pd.DataFrame, rates, path: Path, title: str = "") -> None:
    """Where the devices are (at the first round) and who heard whom: a line per pair that delivered at least
    once, its width the pair's delivery rate over the run (the better direction of the two); the access
    point as a square."""
    first = positions[positions["round"] == positions["round"].min()].set_index("node")
    figure, axis = plt.subplots(figsize=(6, 6))
    n = len(first)
    for i in range(n):
        for j in range(i + 1, n):
            rate = max(rates[i, j] if rates[i, j] == rates[i, j] else 0.0,
                       rates[j, i] if rates[j, i] == rates[j, i] else 0.0)
            if rate > 0:
                axis.plot(first.loc[[i, j], "x_m"], first.loc[[i, j], "y_m"], color="tab:blue",
                          linewidth=0.3 + 2.7 * rate, alpha=0.6)
    devices = first[first["role"] == "device"]
    axis.scatter(devices["x_m"], devices["y_m"], s=40, color="black", zorder=3, label="device")
    for node, row in devices.iterrows():
        axis.annotate(str(node), (row["x_m"], row["y_m"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    server = first[first["role"] == "access_point"]
    if len(server):
        axis.scatter(server["x_m"], server["y_m"], s=120, marker="s", color="tab:red", zorder=3,
                     label="access point")
    axis.plot([], [], color="tab:blue", linewidth=3, label="link, width = delivery rate")
    axis.set(xlabel="x (m)", ylabel="y (m)", aspect="equal")
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)



# metrics.csv column, axis label, file: accuracy against rounds, local steps (gradient evaluations per device),
# simulated seconds and energy spent: the budgets methods doing different work per round compare at.
X_AXES = (("round", "round", "accuracy_rounds.png"),
          ("local_steps", "local steps per device (gradient evaluations)", "accuracy_steps.png"),
          ("sim_time_s", "simulated seconds", "accuracy_time.png"),
          ("cumulative_energy_j", "energy spent by all devices (J)", "accuracy_energy.png"))


def plot_sweep_accuracy(summary: pd.DataFrame, curves: dict[str, Path], by: list[str], out_dir: Path) -> None:
    """Mean accuracy over seeds with its 95 % t interval as a band, one line per algorithm (or group), one
    panel per other setting, all panels on one accuracy axis.

    Writes accuracy_rounds.png, accuracy_steps.png, accuracy_time.png and accuracy_energy.png into ``out_dir``.
    """
    done = summary[summary["status"].isin(("done", "diverged"))]
    if done.empty:
        return
    # Lines: one per algorithm and, when the sweep compares link models, per link model too, so ns-3 and its
    # controls share a panel (solid: ns-3; dashed, dotted: the controls).
    line_axes = [axis for axis in ("algorithm.name", LINK_MODEL) if axis in by] or by[:1]
    panel_axes = [axis for axis in by if axis not in line_axes]
    panels = list(done.groupby(panel_axes, sort=False)) if panel_axes else [((), done)]
    recorded = set.intersection(*(set(pd.read_csv(curves[run_id], nrows=0).columns) for run_id in done["run_id"]))
    for x_column, x_label, filename in X_AXES:
        if x_column not in recorded:  # runs made before the column existed (local_steps): no such figure
            continue
        columns = min(3, len(panels))
        rows = -(-len(panels) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False, sharey=True)
        for axis, (panel_key, panel) in zip(axes.flat, panels):
            lines = panel.groupby(line_axes, sort=False) if line_axes else [(("all",), panel)]
            for line_key, group in lines:
                line_key = line_key if isinstance(line_key, tuple) else (line_key,)
                values = dict(zip(line_axes, line_key))
                frames = [pd.read_csv(curves[run_id]).dropna(subset=["mean_accuracy"]) for run_id in group["run_id"]]
                length = min(len(frame) for frame in frames)
                accuracy = pd.concat([frame["mean_accuracy"].iloc[:length].reset_index(drop=True) for frame in frames],
                                     axis=1)
                x = pd.concat([frame[x_column].iloc[:length].reset_index(drop=True) for frame in frames],
                              axis=1).mean(axis=1)
                mean, seeds = accuracy.mean(axis=1), accuracy.shape[1]
                style = line_style(values.get(LINK_MODEL, "ns3"))
                label = " / ".join(str(v) for v in line_key) + f" ({seeds} seeds)"
                drawn = axis.plot(x, mean, linestyle=style, label=label)
                if seeds > 1:  # the 95 % t interval of the mean over seeds (none for one seed)
                    half = stats.t.ppf(0.975, seeds - 1) * accuracy.std(axis=1) / seeds ** 0.5
                    axis.fill_between(x, mean - half, mean + half, alpha=0.2, color=drawn[0].get_color())
            key = panel_key if isinstance(panel_key, tuple) else (panel_key,)
            axis.set_title(", ".join(f"{a}={v}" for a, v in zip(panel_axes, key)), fontsize=9)
            axis.set_xlabel(x_label)
            axis.grid(alpha=0.3)
        for axis in axes.flat[len(panels):]:
            axis.set_visible(False)
        axes[0, 0].set_ylabel("mean test accuracy")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(4, len(labels)),
                      title=" / ".join(line_axes) or None, title_fontsize=8, bbox_to_anchor=(0.5, 0.0))
        figure.suptitle(link_models_title(done), fontsize=9)
        figure.tight_layout(rect=(0, 0.06 + 0.04 * (len(labels) // 4), 1, 1))  # room for the legend below
        figure.savefig(Path(out_dir) / filename, dpi=100)
        plt.close(figure)


def plot_against_axis(summary: pd.DataFrame, x_axis: str, out_dir: Path, target_accuracy: float) -> None:
    """Conv. Rds (rounds to ``target_accuracy``) and Max Acc against one swept setting, one line per algorithm
    (mean over the rest)."""
    done = summary[summary["status"].isin(("done", "diverged"))]
    if done.empty:
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for (algorithm, model), group in done.groupby(["algorithm.name", LINK_MODEL], sort=False):
        means = group.groupby(x_axis)[["conv_rounds", "max_acc"]].mean()
        style, label = line_style(model), f"{algorithm} / {model}"
        left.plot(means.index, means["conv_rounds"], linestyle=style, marker="o", label=label)
        right.plot(means.index, means["max_acc"], linestyle=style, marker="o", label=label)
    left.set_ylabel(f"Conv. Rds (rounds to mean accuracy {target_accuracy:.2f}; gap = not reached)")
    right.set_ylabel("Max Acc")
    for axis in (left, right):
        axis.set_xlabel(x_axis)
        axis.grid(alpha=0.3)
    left.legend(fontsize=8)
    figure.suptitle(f"target accuracy {target_accuracy:.2f}; {link_models_title(done)}", fontsize=9)
    figure.tight_layout()
    figure.savefig(Path(out_dir) / f"conv_rounds_vs_{x_axis.split('.')[-1]}.png", dpi=100)
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
    axis.set_title(link_models_title(done), fontsize=9)
    axis.set_ylabel(f"{column.replace('_', ' ')} per run (MB)")
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(Path(out_dir) / "bytes_per_algorithm.png", dpi=100)
    plt.close(figure)
