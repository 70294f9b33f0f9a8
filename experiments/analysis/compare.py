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
import math
import sys
import tomllib
from pathlib import Path

import pandas as pd

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


def compare_table(run_dirs: list[Path], target_accuracy: float) -> pd.DataFrame:
    """One row per run: its id, setting and the figures of ``summarize_run`` at ``target_accuracy``."""
    from experiments.run.sweep import summarize_run

    rows = []
    for run_dir in run_dirs:
        setting = _setting(run_dir)
        figures = summarize_run(run_dir, target_accuracy, setting.pop("nodes") or None)
        rows.append({"run_id": run_dir.name, **setting, "status": figures["status"],
                     **{name: figures[name] for name in FIGURES}})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, target_accuracy: float | None) -> str:
    """The runs' table; the rounds, seconds and joules to the target only when one is given."""
    to_target = [] if target_accuracy is None else [f"rounds to {target_accuracy:.2f}", "seconds to it",
                                                    "joules to it"]
    header = ["run", "algorithm", "link model", "N", "density", "alpha", "seed", "final acc", "max acc", *to_target]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def shown(value, digits):
        return "—" if pd.isna(value) else f"{value:.{digits}f}"

    for _, row in table.iterrows():
        lines.append("| " + " | ".join([
            row["run_id"], str(row["algorithm"]), str(row["link_model"]), str(row["devices"]), str(row["density"]),
            str(row["alpha"]), str(row["seed"]), shown(row["final_acc"], 4), shown(row["max_acc"], 4),
            *([] if target_accuracy is None else [shown(row["conv_rounds"], 0), shown(row["time_to_target_s"], 1),
                                                  shown(row["energy_to_target_j"], 1)]),
        ]) + " |")
    return "\n".join(lines) + "\n"


def plot_compare(run_dirs: list[Path], table: pd.DataFrame, target_accuracy: float | None, path: Path) -> None:
    from experiments.analysis.plots import plt  # pyplot on the non-interactive backend the plots module selects

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for run_dir, (_, row) in zip(run_dirs, table.iterrows()):
        metrics = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["mean_accuracy"])
        label = f"{row['algorithm']} / {row['link_model']} / seed {row['seed']}"
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
