"""The local barrier's map: quorum x time-out (counted from the device's send or its compute end) against seconds
per step and seconds to the target over ns-3, on held-out seeds; the defaults of ``messages.schedules.LocalBarrier``
are read from it.

Built from a finished sweep's CSVs only (``make table-barrier-map`` runs the sweep first)::

    python -m experiments.campaigns.barrier_map SWEEP.toml [--results results]

Writes ``barrier_map.md`` and ``barrier_map.csv`` beside the sweep's summary: per setting, seconds and joules per
step, the final accuracy, seconds to the target (mean ± 95 % t interval over the seeds; to the target only when
every seed reached it, k/n always shown). The chosen cell: among the settings whose every seed reached the target at both sizes, the fewest
seconds to the target summed over the sizes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from experiments.analysis import statistics
from experiments.analysis.statistics import shown
from experiments.run.atomic import write_atomically
from experiments.run.sweep import load_sweep, write_summary

BARRIER = ["network.barrier_quorum", "network.barrier_timeout_s", "network.barrier_timeout_from"]
SETTING = ["devices", *BARRIER]
FIGURES = ("s_per_step", "j_per_step", "final_acc", "time_to_target_s")
TO_TARGET = ("time_to_target_s",)


def per_run(summary: pd.DataFrame) -> pd.DataFrame:
    done = summary[summary["status"].isin(("done", "diverged"))].copy()
    done["s_per_step"] = done["sim_time_s"] / done["rounds_completed"]
    done["j_per_step"] = done["energy_j"] / done["rounds_completed"]
    return done


def chosen(table: pd.DataFrame) -> pd.Series | None:
    """The barrier setting every seed of every size brought to the target fastest (summed over the sizes)."""
    sizes = table["devices"].nunique()
    complete = table[table["reached"] == table["runs"]]
    totals = complete.groupby(BARRIER)["time_to_target_s"].agg(["sum", "size"])
    totals = totals[totals["size"] == sizes]
    return None if totals.empty else pd.Series(dict(zip(BARRIER, totals["sum"].idxmin())))


def reading(runs: pd.DataFrame, table: pd.DataFrame, best: pd.Series | None) -> str:
    """What the map says, every number computed from it."""
    short = runs[(runs["network.barrier_timeout_from"] == "compute_end") & (runs["network.barrier_timeout_s"] < 1.0)]
    lines = [f"- A time-out shorter than the send jitter, counted from the compute's end, reached the target in "
             f"{int(short['time_to_target_s'].notna().sum())} of {len(short)} runs: a device gives up before its "
             f"neighbours have sent."]
    full = runs[runs["network.barrier_timeout_s"] == 1.0]
    for devices, group in full.groupby("devices"):
        by_rule = group.groupby("network.barrier_timeout_from")["s_per_step"].mean()
        lines.append(f"- {devices} devices, time-out 1.0 s: counting it from the compute's end instead of the send "
                     f"takes {by_rule['send'] - by_rule['compute_end']:.3f} s less a step (mean over quorums and "
                     f"seeds: {by_rule['compute_end']:.3f} against {by_rule['send']:.3f} s).")
    if best is not None:
        complete = table[(table["reached"] == table["runs"])]
        sums = complete.groupby(BARRIER)["time_to_target_s"].agg(["sum", "size"])
        sums = sums[sums["size"] == table["devices"].nunique()]["sum"].sort_values()
        if len(sums) > 1:
            chosen_cells = complete.set_index(BARRIER).loc[sums.index[0]]
            widest = float(chosen_cells["time_to_target_s_half"].max())
            gap = sums.iloc[1] - sums.iloc[0]
            verdict = ("less than the widest 95 % interval of the chosen cells" if gap < widest else
                       "more than the widest 95 % interval of the chosen cells")
            lines.append(f"- The chosen setting's seconds to the target, summed over the sizes ({sums.iloc[0]:.1f} s), "
                         f"and the next one's ({sums.iloc[1]:.1f} s) differ by {gap:.1f} s, {verdict} "
                         f"(± {widest:.1f} s).")
    return "\n".join(lines)


def markdown(table: pd.DataFrame, target: float) -> str:
    header = ["N", "quorum", "time-out (s)", "from", "s / step", "J / step", "final acc",
              f"s to {target:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row["devices"]), *(str(row[axis]) for axis in BARRIER),
                 shown(row["s_per_step"], row["s_per_step_half"], 3), shown(row["j_per_step"], row["j_per_step_half"], 1),
                 shown(row["final_acc"], row["final_acc_half"], 3),
                 statistics.to_target_cell(row, "time_to_target_s", 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build(sweep_path: Path, results_root: Path) -> str:
    sweep = load_sweep(sweep_path)
    runs = per_run(write_summary(sweep, results_root))
    table = statistics.settings_table(runs, SETTING, FIGURES, TO_TARGET)
    out = sweep.summary_dir(results_root)
    write_atomically(out / "barrier_map.csv", table.to_csv(index=False, float_format="%.6g"))
    best = chosen(table)
    seeds = ", ".join(map(str, sorted(runs["seed"].unique())))
    choice = ("No barrier setting brought every seed to the target at every size." if best is None else
              f"**Chosen** (every seed reached {sweep.target_accuracy:g} at every size, fewest seconds to it summed "
              f"over the sizes): quorum {best['network.barrier_quorum']}, time-out {best['network.barrier_timeout_s']} s "
              f"from the {str(best['network.barrier_timeout_from']).replace('_', ' ')}.")
    return "\n".join([
        reading(runs, table, best), "",
        f"**The local barrier's map** (means ± 95 % t intervals over seeds {seeds}, held out from every report; "
        f"to the target: the interval only when every seed reached it, k/n always shown). Rounds take 1.55 s a "
        f"step in this setting (0.05 s of compute, then the 1.5 s deadline, which some message always misses).", "",
        markdown(table, sweep.target_accuracy), "", choice, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.campaigns.barrier_map",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    text = build(args.sweep, args.results)
    out = load_sweep(args.sweep).summary_dir(args.results)
    write_atomically(out / "barrier_map.md", text)
    print(f"written: {out}/barrier_map.md, barrier_map.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
