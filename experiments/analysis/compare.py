"""``nsdml compare RUN_OR_SWEEP...``: several finished runs on shared axes, and a small table beside them.

Each argument is a run directory (``results/<run-id>``) or a sweep's summary
directory (``results/sweeps/<name>``, whose ``summary.csv`` lists its runs).
Only finished runs whose files are intact are compared; the others are named
on stderr and left out. The figure plots mean test accuracy against rounds,
simulated seconds and joules (all devices), one line per run, on one 0-1
accuracy axis; the table gives each run's setting, final and best accuracy,
and, given a ``--target`` accuracy, the rounds, simulated seconds and joules to it
(the same figures as a sweep's ``summary.csv``: ``experiments.run.sweep``'s
``summarize_run``). Both go to ``--out`` (default
``<results>/compare/<hash of the runs and target>/``): ``compare.png``,
``compare.csv``, ``compare.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tomllib
from pathlib import Path

import pandas as pd

from experiments.analysis.listing import flat_config
from experiments.analysis.statistics import mean_interval, shown
from experiments.config import NOT_IDENTITY_FIELDS
from experiments.run.atomic import write_atomically
from experiments.run.run_outputs import CSV_FLOAT_FORMAT
from experiments.run.run_writer import FINISHED, finished_damage, run_status

SETTING = (("algorithm", ("algorithm", "name")), ("link_model", ("network", "link_model")),
           ("devices", ("devices",)), ("density", ("network", "density")), ("alpha", ("data", "alpha")),
           ("seed", ("seed",)))
FIGURES = ("final_acc", "max_acc", "conv_rounds", "steps_to_target", "time_to_target_s", "energy_to_target_j",
           "sim_time_s", "energy_j")
X_AXES = (("round", "round"), ("sim_time_s", "simulated seconds"), ("cumulative_energy_j", "joules, all devices"))


class CompareError(ValueError):
    """An argument is neither a run directory nor a sweep directory, or no run can be compared."""


def run_dirs_of(paths: list[Path]) -> list[Path]:
    """The run directories the arguments name, in order, each once."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "summary.csv").is_file():  # a sweep: results/sweeps/<name>
            try:
                ids = pd.read_csv(path / "summary.csv")["run_id"]
            except (ValueError, KeyError, pd.errors.ParserError) as error:
                raise CompareError(f"{path}/summary.csv cannot be read ({type(error).__name__})") from error
            found += [path.parent.parent / str(run_id) for run_id in ids]
        elif (path / "config.toml").is_file() or (path / "run.json").is_file():
            found.append(path)
        else:
            raise CompareError(f"{path} is neither a run directory (config.toml, run.json) nor a sweep directory "
                               f"(summary.csv)")
    return list(dict.fromkeys(found))


def _setting(run_dir: Path) -> dict:
    try:
        config = tomllib.loads((run_dir / "config.toml").read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        config = {}
    setting = {}
    for name, keys in SETTING:
        value = config
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        setting[name] = value
    setting["nodes"] = (setting["devices"] or 0) + (config.get("network", {}).get("topology") == "access_point")
    return setting


def comparable(run_dirs: list[Path], warn=lambda message: print(message, file=sys.stderr)) -> list[Path]:
    """The finished, intact runs among ``run_dirs`` (the others named through ``warn``)."""
    kept = []
    for run_dir in run_dirs:
        status = run_status(run_dir)
        problem = (f"not finished (status {status})" if status not in FINISHED else finished_damage(run_dir))
        if problem:
            warn(f"nsdml: compare: leaving out {run_dir}: {problem}")
        else:
            kept.append(run_dir)
    return kept


SHOWN_FIELDS = ("algorithm.name", "network.link_model", "devices", "network.density", "data.alpha", "seed",
                *NOT_IDENTITY_FIELDS)  # the setting columns above, and what is no setting


def differing_fields(run_dirs: list[Path]) -> list[str]:
    """Config fields (beyond the setting columns) that every compared run has and that differ between them: a
    schedule, an lr; they become columns, so two rows never read alike while computing different things."""
    configs = [flat_config(run_dir) or {} for run_dir in run_dirs]
    common = [field for field in configs[0] if all(field in config for config in configs[1:])]  # not one
    # algorithm's own hyperparameters: the algorithm column already tells those apart
    return [field for field in common if field not in SHOWN_FIELDS
            and len({json.dumps(config[field], sort_keys=True) for config in configs}) > 1]


def compare_table(run_dirs: list[Path], target_accuracy: float) -> pd.DataFrame:
    """One row per run: its id, setting, every other config field that differs between the runs, and the
    figures of ``summarize_run`` at ``target_accuracy``."""
    from experiments.run.sweep import summarize_run

    rows, differing = [], differing_fields(run_dirs)
    for run_dir in run_dirs:
        setting, config = _setting(run_dir), flat_config(run_dir) or {}
        figures = summarize_run(run_dir, target_accuracy, setting.pop("nodes") or None)
        rows.append({"run_id": run_dir.name, **setting, **{field: config.get(field) for field in differing},
                     "status": figures["status"], **{name: figures[name] for name in FIGURES}})
    table = pd.DataFrame(rows)
    table.attrs["differing"] = differing
    return table


def over_seeds(table: pd.DataFrame, target_accuracy: float | None) -> str:
    """The runs grouped by everything but the seed: mean ± 95 % t half-width of the final and best accuracy,
    and of the rounds to the target over the seeds that reached it (k/n; an interval only when all did)."""
    keys = [column for column in ("algorithm", "link_model", "devices", "density", "alpha",
                                  *table.attrs.get("differing", [])) if column in table]
    header = [*keys, "runs", "final acc", "max acc",
              *([] if target_accuracy is None else [f"rounds to {target_accuracy:.2f}"])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in table.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        cells = [*map(str, key), str(len(group)), shown(*mean_interval(group["final_acc"]), 4),
                 shown(*mean_interval(group["max_acc"]), 4)]
        if target_accuracy is not None:
            reached = group["conv_rounds"].dropna()
            mean, half = mean_interval(reached)
            cells.append(("—" if not len(reached) else shown(mean, half if len(reached) == len(group) else math.nan, 1))
                         + f" ({len(reached)}/{len(group)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(table: pd.DataFrame, target_accuracy: float | None) -> str:
    """The runs' table; the rounds, seconds and joules to the target only when one is given."""
    to_target = [] if target_accuracy is None else [f"rounds to {target_accuracy:.2f}", "seconds to it",
                                                    "joules to it"]
    differing = table.attrs.get("differing", [])
    header = ["run", "algorithm", "link model", "N", "density", "alpha", *differing, "seed", "final acc", "max acc",
              *to_target]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def number(value, digits):
        return "—" if pd.isna(value) else f"{value:.{digits}f}"

    for _, row in table.iterrows():
        lines.append("| " + " | ".join([
            row["run_id"], str(row["algorithm"]), str(row["link_model"]), str(row["devices"]), str(row["density"]),
            str(row["alpha"]), *(str(row[field]) for field in differing), str(row["seed"]),
            number(row["final_acc"], 4), number(row["max_acc"], 4),
            *([] if target_accuracy is None else [number(row["conv_rounds"], 0), number(row["time_to_target_s"], 1),
                                                  number(row["energy_to_target_j"], 1)]),
        ]) + " |")
    grouped = ""
    if table.drop(columns=["run_id", "seed", "status", *FIGURES]).duplicated().any():  # some setting has seeds
        grouped = (f"\nOver seeds (mean ± 95 % t half-width; to the target over the seeds that reached it):\n\n"
                   f"{over_seeds(table, target_accuracy)}")
    return "\n".join(lines) + "\n" + grouped


def plot_compare(run_dirs: list[Path], table: pd.DataFrame, target_accuracy: float | None, path: Path) -> None:
    from experiments.analysis.plots import plt  # pyplot on the non-interactive backend the plots module selects

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for run_dir, (_, row) in zip(run_dirs, table.iterrows()):
        metrics = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["mean_accuracy"])
        label = " / ".join(str(row[c]) for c in ("algorithm", "link_model", *table.attrs.get("differing", [])))
        label += f" / seed {row['seed']}"
        for axis, (column, _) in zip(axes, X_AXES):
            axis.plot(metrics[column], metrics["mean_accuracy"], label=label)
    for axis, (_, x_label) in zip(axes, X_AXES):
        if target_accuracy is not None:
            axis.axhline(target_accuracy, color="grey", linestyle=":", linewidth=1)
        axis.set(xlabel=x_label, ylim=(0.0, 1.0))
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("mean test accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
    figure.suptitle(f"{len(run_dirs)} runs" + ("" if target_accuracy is None else
                                               f"; dotted: target accuracy {target_accuracy:.2f}"), fontsize=9)
    figure.tight_layout(rect=(0, 0.08 + 0.04 * (len(labels) // 4), 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def default_out(run_dirs: list[Path], target_accuracy: float | None) -> Path:
    digest = hashlib.sha256(("\n".join(d.name for d in run_dirs) + f"\n{target_accuracy}").encode()).hexdigest()
    return run_dirs[0].parent / "compare" / digest[:10]


def compare(paths: list[Path], target_accuracy: float | None, out: Path | None = None) -> tuple[Path, pd.DataFrame]:
    """Write compare.png, compare.csv and compare.md for the runs ``paths`` name; returns (out, table).
    Without a target the curves and the final figures only (the to-target columns stay empty)."""
    run_dirs = comparable(run_dirs_of(paths))
    if not run_dirs:
        raise CompareError("no finished, intact run to compare")
    table = compare_table(run_dirs, math.inf if target_accuracy is None else target_accuracy)
    out = Path(out) if out is not None else default_out(run_dirs, target_accuracy)
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "compare.csv", table.to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
    write_atomically(out / "compare.md", markdown(table, target_accuracy))
    plot_compare(run_dirs, table, target_accuracy, out / "compare.png")
    return out, table
