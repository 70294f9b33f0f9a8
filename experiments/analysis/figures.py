"""Figures a user chooses: ``nsdml plot SWEEP --x FIELD --y METRIC [--hue F] [--style F] [--col F] [--row F]``.

Two kinds of figure, told apart by ``--x``:

- **curves**: ``--x`` is a metrics.csv clock (round, local_steps, sim_time_s, cumulative_energy_j) and ``--y``
  a metrics.csv column (default mean_accuracy): each line the mean over seeds, evaluation by evaluation.
- **points**: ``--x`` is a config field (network.density, devices, algorithm.lr, ...) and ``--y`` a figure of
  summary.csv (final_acc, max_acc, conv_rounds, time_to_target_s, energy_j, ...): the mean over seeds at each x.

Over seeds, never hidden: with four seeds or more the 95 % t interval is drawn (an accuracy's clipped to
[0, 1]); with three or fewer every seed is drawn on its own; a figure some seeds never reached (a "to target"
figure) draws the seeds that did and writes k/n beside them, never a mean of the survivors. Every config field
that differs between the plotted runs must sit on an axis (x, hue, style, col, row) or be fixed with
``--where``: anything else would be pooled silently, so it is refused, naming the field. Colours are fixed per
algorithm (the registry's order), so one algorithm has one colour in every figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bridge.link_models import LINK_MODELS  # noqa: E402
from experiments.analysis.statistics import TO_TARGET, mean_interval  # noqa: E402
from experiments.config import NOT_IDENTITY_FIELDS, SCALAR_FIELDS, SECTIONS  # noqa: E402
from learner.algorithms.registry import ALGORITHMS  # noqa: E402

CLOCKS = ("round", "local_steps", "sim_time_s", "cumulative_energy_j")  # metrics.csv columns a curve runs along
FORMATS = ("png", "pdf", "svg")
BOUNDED = ("accuracy", "acc", "density")  # a figure whose name holds one of these lies in [0, 1]
LABELS = {
    "round": "round", "local_steps": "local steps per device (gradient evaluations)",
    "sim_time_s": "simulated seconds", "cumulative_energy_j": "energy spent by all devices (J)",
    "mean_accuracy": "mean test accuracy", "min_accuracy": "lowest device's test accuracy",
    "max_accuracy": "highest device's test accuracy", "final_acc": "final mean test accuracy",
    "max_acc": "best mean test accuracy", "conv_rounds": "rounds to the target",
    "steps_to_target": "local steps to the target", "time_to_target_s": "simulated seconds to the target",
    "energy_to_target_j": "joules to the target", "energy_j": "energy spent (J)", "bytes_sent": "bytes sent",
    "bytes_on_air": "bytes on air", "wall_s": "wall-clock seconds",
    "algorithm.name": "algorithm", "algorithm.lr": "learning rate", "network.density": "link density (target)",
    "network.link_model": "link model", "network.schedule": "schedule", "devices": "devices",
    "data.alpha": "Dirichlet α (data skew)", "data.batch_size": "batch size", "model.name": "model",
}
PALETTE = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors + plt.get_cmap("Set1").colors
STYLES = ("-", "--", ":", "-.")


class PlotError(ValueError):
    """A plot request that cannot be drawn honestly (an unknown field, a varying field on no axis)."""


def label(field: str) -> str:
    return LABELS.get(field, field.rsplit(".", 1)[-1].replace("_", " "))


def config_fields(summary: pd.DataFrame) -> list[str]:
    """summary.csv's columns that come from the run's config (the rest are results)."""
    return [column for column in summary.columns if column not in NOT_IDENTITY_FIELDS
            and (column in SCALAR_FIELDS or column.split(".", 1)[0] in SECTIONS)]


def colour_of(field: str | None, value: Any, values: list) -> Any:
    """An algorithm keeps its colour in every figure (the registry's order); other hues go by their sorted
    position in this figure."""
    if field == "algorithm.name" and value in ALGORITHMS:
        return PALETTE[list(ALGORITHMS).index(value) % len(PALETTE)]
    return PALETTE[values.index(value) % len(PALETTE)]


def style_of(field: str | None, value: Any, values: list) -> str:
    if field == "network.link_model" and value in LINK_MODELS:
        return LINK_MODELS[value].style
    return STYLES[values.index(value) % len(STYLES)]


def _sorted_values(frame: pd.DataFrame, field: str | None) -> list:
    if field is None:
        return [None]
    values = list(frame[field].drop_duplicates())
    try:
        return sorted(values)
    except TypeError:
        return values


def _select(frame: pd.DataFrame, field: str | None, value: Any) -> pd.DataFrame:
    if field is None:
        return frame
    return frame[frame[field].isna()] if value != value else frame[frame[field] == value]


def check_request(summary: pd.DataFrame, x: str, y: str, axes: dict[str, str | None]) -> str:
    """Refuse what cannot be drawn honestly; returns the figure's kind, "curves" or "points"."""
    fields = config_fields(summary)
    for role, field in {"x": x, **axes}.items():
        if field is None or (role == "x" and field in CLOCKS):
            continue
        if field not in fields:
            raise PlotError(f"--{role}: {field!r} is not a config field of these runs; "
                            f"e.g. {', '.join(f for f in ('algorithm.name', 'network.density', 'devices') if f in fields)}")
    kind = "curves" if x in CLOCKS else "points"
    if kind == "points":
        numeric = [c for c in summary.columns if c not in fields and c not in NOT_IDENTITY_FIELDS
                   and pd.api.types.is_numeric_dtype(summary[c]) and (summary[c].notna().any() or c in TO_TARGET)]
        if y not in numeric:
            raise PlotError(f"--y: {y!r} is not a figure of summary.csv; one of {', '.join(numeric)} "
                            f"(or --x one of {', '.join(CLOCKS)} for curves of metrics.csv)")
    placed = [f for f in (x, *axes.values()) if f and f not in CLOCKS]
    hidden = [f for f in fields if f not in {*placed, "seed"} and _varies(summary, f, placed)]
    if hidden:
        also = [f for f in hidden[1:] if summary[f].notna().all()]  # not an algorithm's own hyperparameter
        values = ", ".join(map(str, summary[hidden[0]].drop_duplicates().tolist()[:6]))
        raise PlotError(f"{hidden[0]} differs between the plotted runs ({values}) but is on no axis, so it would be "
                        f"pooled silently; put it on --hue, --style, --col or --row, or fix it with "
                        f"--where {hidden[0]}=VALUE" + (f" (also differing: {', '.join(also)})" if also else ""))
    return kind


def _varies(frame: pd.DataFrame, field: str, within: list[str]) -> bool:
    """Whether ``field`` takes more than one value among runs that agree on every ``within`` field."""
    if not within:
        return frame[field].nunique(dropna=False) > 1
    return bool((frame.groupby(within, dropna=False)[field].nunique(dropna=False) > 1).any())


def attached_fields(frame: pd.DataFrame, x: str, axes: dict[str, str | None]) -> list[str]:
    """Config fields every plotted run has that differ between them only along with the axes (an algorithm's own
    learning rate): not pooled, but named in the legend so the reader sees them."""
    placed = {x, *axes.values(), "seed"}
    return [f for f in config_fields(frame) if f not in placed and frame[f].notna().all() and frame[f].nunique() > 1]


def _draw_points(axis, group: pd.DataFrame, x: str, y: str, colour, style: str, bounded: bool, slot: int) -> str:
    """Mean over seeds at each x with its interval, or the seeds themselves; returns the legend's seed note."""
    means, notes = [], set()
    for x_value, at_x in group.groupby(x, sort=True):
        values = at_x[y].to_numpy(dtype=float)
        reached = values[~np.isnan(values)]
        if len(reached) < len(values):  # some seeds never got a figure (never reached the target)
            axis.scatter([x_value] * len(reached), reached, color=colour, s=14, marker="o", facecolors="none")
            where = ((x_value, reached.max()), "data") if len(reached) else ((x_value, 0.03), ("data", "axes fraction"))
            axis.annotate(f"{len(reached)}/{len(values)}", where[0], xycoords=where[1], fontsize=7, color=colour,
                          xytext=(4, 2 + 9 * slot), textcoords="offset points")  # one line per hue
            notes.add("k/n reached")
            continue
        mean, half = mean_interval(values)
        means.append((x_value, mean))
        if len(values) <= 3:
            axis.scatter([x_value] * len(values), values, color=colour, s=12, alpha=0.7)
            notes.add(f"{len(values)} seeds drawn")
        else:
            low, high = mean - half, mean + half
            if bounded:
                low, high = max(low, 0.0), min(high, 1.0)
            axis.errorbar([x_value], [mean], yerr=[[mean - low], [high - mean]], color=colour, capsize=3,
                          fmt="none")
            notes.add(f"{len(values)} seeds, 95 % interval")
    if means:
        xs, ys = zip(*means)
        axis.plot(xs, ys, color=colour, linestyle=style, marker="o", markersize=4)
    return "; ".join(sorted(notes))


def _draw_curves(axis, group: pd.DataFrame, results_root: Path, x: str, y: str, colour, style: str,
                 bounded: bool) -> str:
    """The mean over seeds, evaluation by evaluation (cut to the shortest run), with its interval or the
    seeds themselves."""
    frames = []
    for run_id in group["run_id"]:
        metrics = pd.read_csv(Path(results_root) / str(run_id) / "metrics.csv")
        if y not in metrics or x not in metrics:
            raise PlotError(f"--y: {y!r} is not a column of {run_id}/metrics.csv; one of "
                            f"{', '.join(c for c in metrics.columns if c not in CLOCKS)}")
        frames.append(metrics.dropna(subset=[y]).reset_index(drop=True))
    length = min(len(frame) for frame in frames)
    values = np.column_stack([frame[y].to_numpy(dtype=float)[:length] for frame in frames])
    xs = np.column_stack([frame[x].to_numpy(dtype=float)[:length] for frame in frames]).mean(axis=1)
    mean = values.mean(axis=1)
    axis.plot(xs, mean, color=colour, linestyle=style)
    seeds = values.shape[1]
    if seeds <= 3:
        if seeds > 1:
            axis.plot(xs, values, color=colour, linestyle=style, linewidth=0.6, alpha=0.35)
        return f"{seeds} seed{'s' * (seeds > 1)} drawn"
    half = np.array([mean_interval(row)[1] for row in values])
    low, high = mean - half, mean + half
    if bounded:
        low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    axis.fill_between(xs, low, high, color=colour, alpha=0.2)
    return f"{seeds} seeds, 95 % interval"


def plot_figure(summary: pd.DataFrame, results_root: Path, path: Path, x: str, y: str, hue: str | None = None,
                style: str | None = None, col: str | None = None, row: str | None = None, title: str = "") -> Path:
    """Draw one figure of finished runs (``summary``: summary.csv's rows) into ``path`` (png, pdf or svg)."""
    done = summary[summary["status"].isin(("done", "diverged"))]
    if done.empty:
        raise PlotError("no finished run to plot (every run is missing, failed or damaged)")
    kind = check_request(done, x, y, {"hue": hue, "style": style, "col": col, "row": row})
    bounded = any(word in y for word in BOUNDED)
    attached = attached_fields(done, x, {"hue": hue, "style": style, "col": col, "row": row})
    rows, cols = _sorted_values(done, row), _sorted_values(done, col)
    hues, styles = _sorted_values(done, hue), _sorted_values(done, style)
    figure, axes = plt.subplots(len(rows), len(cols), figsize=(4.6 * len(cols) + 2.2, 3.6 * len(rows)),
                                squeeze=False, sharex=True, sharey=True)
    legend: dict[str, Any] = {}
    for (i, row_value), (j, col_value) in ((r, c) for r in enumerate(rows) for c in enumerate(cols)):
        axis, panel = axes[i, j], _select(_select(done, row, row_value), col, col_value)
        for slot, (hue_value, style_value) in enumerate((h, v) for h in hues for v in styles):
            group = _select(_select(panel, hue, hue_value), style, style_value)
            if group.empty:
                continue
            colour = colour_of(hue, hue_value, hues) if hue else "black"
            line = style_of(style, style_value, styles) if style else "-"
            note = (_draw_curves(axis, group, results_root, x, y, colour, line, bounded) if kind == "curves"
                    else _draw_points(axis, group, x, y, colour, line, bounded, slot))
            name = " / ".join(str(v) for v in (hue_value, style_value) if v is not None) or label(y)
            name += "".join(f", {label(f)} {group[f].iloc[0]}" for f in attached
                            if group[f].nunique(dropna=False) == 1)
            legend.setdefault(f"{name} ({note})", plt.Line2D([], [], color=colour, linestyle=line))
        facets = [f"{label(f)} = {v}" for f, v in ((row, row_value), (col, col_value)) if f]
        axis.set_title(", ".join(facets), fontsize=9)
        axis.grid(alpha=0.3)
        if kind == "points" and pd.api.types.is_numeric_dtype(done[x]):  # every x in view, drawn or not
            low, high = float(done[x].min()), float(done[x].max())
            margin = 0.05 * (high - low) or 0.5
            axis.set_xlim(low - margin, high + margin)
        if bounded:
            axis.set_ylim(0.0, 1.0)
        if i == len(rows) - 1:
            axis.set_xlabel(label(x))
        if j == 0:
            axis.set_ylabel(label(y))
    heading = " / ".join(label(f) for f in (hue, style) if f)
    figure.legend(list(legend.values()), list(legend), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                  title=heading or None, title_fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    if path.suffix.lstrip(".") not in FORMATS:
        raise PlotError(f"--format: {path.suffix!r} is not allowed; one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=150, bbox_inches="tight")  # tight: the legend beside the panels is kept whole
    plt.close(figure)
    return path


# The sweep's own figures: accuracy along each clock, and each swept setting's effect on the final accuracy and
# on the rounds to the target. File names are kept from earlier versions so readers' links still work.
SWEEP_CURVES = (("round", "accuracy_rounds"), ("local_steps", "accuracy_steps"), ("sim_time_s", "accuracy_time"),
                ("cumulative_energy_j", "accuracy_energy"))
SWEEP_POINTS = ("network.density", "devices", "data.alpha", "algorithm.lr")


def default_layout(by: list[str], x: str | None = None) -> dict[str, str | None] | None:
    """Where a sweep's axes go in its own figures: algorithm as colour, link model as line style, the rest as
    columns then rows; None when more axes vary than a figure has room for."""
    rest = [axis for axis in by if axis != x]
    layout: dict[str, str | None] = {"hue": None, "style": None, "col": None, "row": None}
    for role, field in (("hue", "algorithm.name"), ("style", "network.link_model")):
        if field in rest:
            layout[role] = field
            rest.remove(field)
    for role in ("hue", "col", "row"):
        if rest and layout[role] is None:
            layout[role] = rest.pop(0)
    return None if rest else layout


def sweep_figures(summary: pd.DataFrame, results_root: Path, by: list[str], out_dir: Path, title: str) -> list[str]:
    """Draw the sweep's default figures into ``out_dir``; returns a line per figure left out, and why."""
    left_out = []
    requests = [(x, "mean_accuracy", name) for x, name in SWEEP_CURVES]
    for x in (axis for axis in SWEEP_POINTS if axis in by):
        short = x.rsplit(".", 1)[-1]
        requests += [(x, "final_acc", f"final_acc_vs_{short}"), (x, "conv_rounds", f"conv_rounds_vs_{short}")]
    for x, y, name in requests:
        layout = default_layout(by, x)
        if layout is None:
            left_out.append(f"{name}.png: more swept fields than a figure's axes ({', '.join(by)}); "
                            f"draw it with nsdml plot --where")
            continue
        try:
            plot_figure(summary, results_root, Path(out_dir) / f"{name}.png", x, y, **layout, title=title)
        except PlotError as error:
            left_out.append(f"{name}.png: {error}")
    return left_out
