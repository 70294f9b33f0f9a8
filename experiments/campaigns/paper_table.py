"""A sweep's table in the shape of HyperPrism's: Max Acc and Conv. Rds per algorithm, with the reference
algorithm's % change against each row.

    python -m experiments.campaigns.paper_table SWEEP.toml [--results DIR] [--reference hyperprism]

Reads only ``results/sweeps/<name>/table.csv`` (written by ``nsdml sweep``/``nsdml table``) and writes
``paper_table.csv`` and ``paper_table.md`` beside it: a headline (the reference against ``--baseline``
per setting, and which algorithm reached the target first in rounds and in simulated seconds), then one
table per setting of the sweep's other axes (e.g. per alpha and link model), each row with its simulated
seconds to the target beside its rounds.
For a row r and the reference h:

    Max Acc change   = (MaxAcc_h - MaxAcc_r) / MaxAcc_r * 100      (> 0: the reference is more accurate)
                       and in accuracy points, (MaxAcc_h - MaxAcc_r) * 100
    Conv. Rds change = (Rds_r - Rds_h) / Rds_r * 100               (> 0: the reference converges faster)

Conv. Rds is the mean over the seeds that reached the target; a row that never reached it has no change.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from experiments.run.atomic import write_atomically
from experiments.config import ConfigError
from experiments.analysis.statistics import shown
from experiments.run.sweep import load_sweep


def paper_tables(table: pd.DataFrame, reference: str) -> list[tuple[dict, pd.DataFrame]]:
    """(setting, relative table) for every combination of the axes other than the algorithm."""
    metrics = {"runs", "reached"} | {c for c in table.columns if c.endswith(("_mean", "_std", "_half"))}
    axes = [c for c in table.columns if c not in metrics and c != "algorithm.name"]
    groups = table.groupby(axes, sort=False) if axes else [((), table)]
    return [(dict(zip(axes, key if isinstance(key, tuple) else (key,))), relative_table(group, reference))
            for key, group in groups]


def relative_table(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per algorithm: Max Acc, Conv. Rds and the reference's % change against it."""
    if "algorithm.name" not in table or reference not in set(table["algorithm.name"]):
        raise ValueError(f"--reference: {reference!r} is not an algorithm of this table")
    ref = table.set_index("algorithm.name").loc[reference]
    rows = []
    for _, row in table.iterrows():
        rds, ref_rds = row["conv_rounds_mean"], ref["conv_rounds_mean"]
        rows.append({
            "algorithm": row["algorithm.name"],
            "runs": int(row["runs"]),
            "reached": int(row["reached"]),
            "max_acc": row["max_acc_mean"],
            "max_acc_std": row["max_acc_std"],
            "max_acc_half": row.get("max_acc_half", math.nan),  # 95 % t half-width over seeds (NaN: one seed)
            "conv_rounds": rds,
            "seconds_to_target": row.get("time_to_target_s_mean", math.nan),
            f"{reference}_max_acc_change_pct": (ref["max_acc_mean"] - row["max_acc_mean"]) / row["max_acc_mean"] * 100,
            f"{reference}_max_acc_change_points": (ref["max_acc_mean"] - row["max_acc_mean"]) * 100,
            f"{reference}_conv_rounds_change_pct": (rds - ref_rds) / rds * 100 if rds > 0 and ref_rds > 0 else math.nan,
        })
    return pd.DataFrame(rows)


def markdown(relative: pd.DataFrame, reference: str, target: float) -> str:
    header = ["algorithm", "Max Acc (mean ± 95 % CI)", f"Conv. Rds (≥ {target:.2f})",
              f"{reference} Max Acc change (relative)", f"{reference} Max Acc change (points)",
              f"{reference} Conv. Rds change", "sim s to target"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in relative.iterrows():
        rounds = "—" if math.isnan(row["conv_rounds"]) else f"{row['conv_rounds']:.1f}"
        conv = f"{rounds} ({row['reached']}/{row['runs']})"
        same = row["algorithm"] == reference
        acc_change = "—" if same else f"{row[f'{reference}_max_acc_change_pct']:+.2f}%"
        points = "—" if same else f"{row[f'{reference}_max_acc_change_points']:+.2f}"
        rds_change = row[f"{reference}_conv_rounds_change_pct"]
        rds_text = "—" if same or math.isnan(rds_change) else f"{rds_change:+.2f}%"
        seconds = row.get("seconds_to_target", math.nan)
        seconds_text = "—" if pd.isna(seconds) else f"{seconds:.1f}"
        lines.append(f"| {row['algorithm']} | {shown(row['max_acc'], row['max_acc_half'], 4)} | {conv} | {acc_change} "
                     f"| {points} | {rds_text} | {seconds_text} |")
    return "\n".join(lines) + "\n"


RELATIVE_COLUMNS = {"algorithm", "runs", "reached", "max_acc", "max_acc_std", "max_acc_half", "conv_rounds",
                    "seconds_to_target"}


def headline(rows: pd.DataFrame, reference: str, baseline: str, target: float, name: str) -> str:
    """One line per setting: the reference against ``baseline`` in rounds and simulated seconds to the
    target, and which algorithm got there first in each (rounds flatter multi-exchange algorithms)."""
    axes = [c for c in rows.columns if c not in RELATIVE_COLUMNS and not c.startswith(reference + "_")]
    header = ["setting", f"{reference} Conv. Rds", f"{baseline} Conv. Rds", f"{reference} Conv. Rds change",
              f"{reference} Max Acc change", f"{reference} / {baseline} sim s", "fewest rounds (all seeds)", "fewest sim s (all seeds)"]
    lines = [f"**{name}: {reference} against {baseline}** (threshold {target:.2f}; change > 0: {reference} better)",
             "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    groups = rows.groupby(axes, sort=False) if axes else [((), rows)]
    for key, group in groups:
        by = group.set_index("algorithm")
        if baseline not in by.index:
            continue
        ref, base = by.loc[reference], by.loc[baseline]
        reached = by[by["reached"] == by["runs"]]  # a mean over the lucky seeds alone would flatter
        fastest = lambda column: "—" if reached.empty else (  # noqa: E731
            f"{reached[column].idxmin()} ({reached[column].min():.1f})")
        setting = ", ".join(f"{axis} = {value}" for axis, value in zip(axes, key if isinstance(key, tuple) else (key,)))
        setting = setting or "every run"
        lines.append(" | ".join([
            f"| {setting}", _rounds(ref), _rounds(base), _percent(base[f"{reference}_conv_rounds_change_pct"]),
            _percent(base[f"{reference}_max_acc_change_pct"]),
            f"{_number(ref['seconds_to_target'])} / {_number(base['seconds_to_target'])}",
            fastest("conv_rounds"), fastest("seconds_to_target")]) + " |")
    return "\n".join(lines) + "\n"


def _rounds(row) -> str:
    return f"{_number(row['conv_rounds'])} ({int(row['reached'])}/{int(row['runs'])})"


def _number(value) -> str:
    return "—" if pd.isna(value) else f"{value:.1f}"


def _percent(value) -> str:
    return "—" if pd.isna(value) else f"{value:+.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.campaigns.paper_table", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the TOML sweep file whose table to reshape")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--reference", default="hyperprism")
    parser.add_argument("--baseline", default="dpsgd", help="the row the headline compares the reference with")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.sweep)
        out = sweep.summary_dir(args.results)
        tables = paper_tables(pd.read_csv(out / "table.csv"), args.reference)
    except (ConfigError, ValueError, OSError) as error:
        print(f"paper_table: {error}", file=sys.stderr)
        return 2
    rows = pd.concat([relative.assign(**setting) for setting, relative in tables], ignore_index=True)
    write_atomically(out / "paper_table.csv", rows.to_csv(index=False, float_format="%.6g"))
    sections = []
    for setting, relative in tables:
        title = ", ".join(f"{axis} = {value}" for axis, value in setting.items())
        sections.append((f"**{sweep.name}: {title}**\n\n" if title else f"**{sweep.name}**\n\n") +
                        markdown(relative, args.reference, sweep.target_accuracy))
    text = "\n".join([headline(rows, args.reference, args.baseline, sweep.target_accuracy, sweep.name), *sections])
    write_atomically(out / "paper_table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
