"""The time table: rounds against the local barrier on the network's clock, with and without stragglers and radio
sleep; seconds, joules and steps to the target, with 95 % intervals and paired differences over the seeds.

Built from a finished sweep's CSVs only (``make table-time`` runs the sweep first)::

    python -m experiments.campaigns.time_table SWEEP.toml [--results results]

Writes ``time_table.md`` and ``time_table.csv`` beside the sweep's summary. Per setting: seconds and joules
per step (the run's simulated seconds and cumulative joules over its steps), delivered links per step,
steps, seconds and joules to the target (mean ± 95 % t interval when every seed reached it; k/n always
shown), the final accuracy. Paired: local barrier minus rounds, and radio sleep on minus off, seed by
seed (``experiments.analysis.statistics.paired_differences``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from experiments.run.atomic import write_atomically
from experiments.analysis import statistics
from experiments.analysis.statistics import paired_differences, shown
from experiments.run.sweep import load_sweep, write_summary

SETTING = ["devices", "algorithm.name", "network.compute_model", "network.radio_sleep", "network.schedule"]
NAMES = {"devices": "N", "algorithm.name": "algorithm", "network.compute_model": "compute",
         "network.radio_sleep": "sleep", "network.schedule": "schedule"}
FIGURES = ("s_per_step", "j_per_step", "links_per_step", "final_acc", "steps_to_target", "time_to_target_s",
           "energy_to_target_j")
TO_TARGET = ("steps_to_target", "time_to_target_s", "energy_to_target_j")


def per_run(summary: pd.DataFrame, results_root: Path) -> pd.DataFrame:
    """The finished runs with their per-step figures added (from their metrics.csv)."""
    done = summary[summary["status"].isin(("done", "diverged"))].copy()
    done["s_per_step"] = done["sim_time_s"] / done["rounds_completed"]
    done["j_per_step"] = done["energy_j"] / done["rounds_completed"]
    done["links_per_step"] = [pd.read_csv(results_root / run_id / "metrics.csv")["delivered_links"].iloc[1:].mean()
                              for run_id in done["run_id"]]
    return done


def settings_table(runs: pd.DataFrame) -> pd.DataFrame:
    return statistics.settings_table(runs, SETTING, FIGURES, TO_TARGET, reached_by="steps_to_target")


_to_target = statistics.to_target_cell


def settings_markdown(table: pd.DataFrame, target: float) -> str:
    header = ["N", "algorithm", "compute", "sleep", "schedule", "s / step", "J / step", "links / step",
              "final acc", f"steps to {target:g}", f"s to {target:g}", f"J to {target:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row["devices"]), row["algorithm.name"], row["network.compute_model"],
                 "on" if row["network.radio_sleep"] else "off", row["network.schedule"],
                 shown(row["s_per_step"], row["s_per_step_half"], 3), shown(row["j_per_step"], row["j_per_step_half"], 1),
                 shown(row["links_per_step"], row["links_per_step_half"], 0),
                 shown(row["final_acc"], row["final_acc_half"], 3), _to_target(row, "steps_to_target", 1),
                 _to_target(row, "time_to_target_s", 1), _to_target(row, "energy_to_target_j", 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_markdown(paired: pd.DataFrame, compared: str, title: str) -> str:
    """``compared``: the axis whose two values are differenced (the others name the setting)."""
    others = [axis for axis in SETTING if axis != compared]
    header = [NAMES[axis] for axis in others] + [title, "pairs", "Δ s / step", "Δ J / step", "Δ final acc",
                                                 "Δ s to target (pairs)", "Δ J to target (pairs)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in paired.iterrows():
        setting = [("on" if row[axis] else "off") if axis == "network.radio_sleep" else str(row[axis])
                   for axis in others]
        label = (lambda value: "on" if value else "off") if compared == "network.radio_sleep" else str
        cells = setting + [f"{label(row['algorithm'])} − {label(row['reference'])}", str(row["pairs"]),
                           shown(row["s_per_step_diff"], row["s_per_step_half"], 3, signed=True),
                           shown(row["j_per_step_diff"], row["j_per_step_half"], 1, signed=True),
                           shown(row["final_acc_diff"], row["final_acc_half"], 3, signed=True),
                           f"{shown(row['time_to_target_s_diff'], row['time_to_target_s_half'], 1, signed=True)} "
                           f"({row['time_to_target_s_pairs']})",
                           f"{shown(row['energy_to_target_j_diff'], row['energy_to_target_j_half'], 0, signed=True)} "
                           f"({row['energy_to_target_j_pairs']})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(runs: pd.DataFrame, compared: str, order: list) -> pd.DataFrame:
    """``compared``'s values differenced seed by seed, ``order[0]`` the reference."""
    ranked = runs.assign(_order=runs[compared].map({value: k for k, value in enumerate(order)}))
    ranked = ranked.sort_values(["_order", "seed"], kind="stable")
    return paired_differences(ranked, SETTING, algorithm=compared,
                              figures=("s_per_step", "j_per_step", "final_acc", "time_to_target_s",
                                       "energy_to_target_j"))


def build(sweep_path: Path, results_root: Path) -> str:
    sweep = load_sweep(sweep_path)
    runs = per_run(write_summary(sweep, results_root), results_root)
    target = sweep.target_accuracy
    table = settings_table(runs)
    by_schedule = paired(runs, "network.schedule", ["rounds", "local_barrier"])
    by_sleep = paired(runs, "network.radio_sleep", [False, True])
    out = sweep.summary_dir(results_root)
    write_atomically(out / "time_table.csv", table.to_csv(index=False, float_format="%.6g"))
    write_atomically(out / "time_paired.csv", pd.concat([by_schedule.assign(compared="schedule"),
                                                        by_sleep.assign(compared="radio_sleep")]).to_csv(
        index=False, float_format="%.6g"))
    seeds = sorted(runs["seed"].unique())
    return "\n".join([
        "**What sets the clock.** rounds: every step lasts the slowest live device's compute plus the "
        "exchange's 1.5 s deadline (less only when every addressed message arrived); local_barrier: a step "
        "ends when the last device passed its barrier, i.e. when ns-3 delivered the messages it waits for "
        "(or its time-out came), compute included on ns-3's timeline. Messages: ns-3 simulates each to its "
        "last byte. J / step: all devices' radio (ns-3's energy model) and compute (3 W) energy.", "",
        f"**Per setting** (means ± 95 % t intervals over seeds {', '.join(map(str, seeds))}; to the target: "
        f"the interval only when every seed reached it, k/n always shown):", "",
        settings_markdown(table, target), "",
        "**Local barrier minus rounds**, seed by seed (same seed: same data split, initial models and "
        "mini-batches; each schedule its own ns-3 simulation):", "",
        paired_markdown(by_schedule, "network.schedule", "schedules"), "",
        "**Radio sleep on minus off**, seed by seed:", "",
        paired_markdown(by_sleep, "network.radio_sleep", "sleep"), ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.campaigns.time_table", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    text = build(args.sweep, args.results)
    out = load_sweep(args.sweep).summary_dir(args.results)
    write_atomically(out / "time_table.md", text)
    print(f"written: {out}/time_table.md, time_table.csv, time_paired.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
