"""The ablation ladder's table: what each effect of 802.11a costs each algorithm, with 95 % intervals, the
paired difference of every rung to the rung below, and the algorithms' ranking along the ladder.

Built from finished sweeps' CSVs only (``make table-ladder`` runs both sweeps first)::

    python -m experiments.campaigns.ladder_table TUNING.toml EVALUATION.toml [--results results]

The learning rates: per algorithm, the tuning sweep's (seed 0) lr with the fewest rounds to the target averaged
over the rungs, a rung that never reached it counted as rounds + 1; ties go to the higher mean final accuracy.
The evaluation sweep must use exactly those rates (exit 2 otherwise, naming the field), so the table cannot
silently drift from its tuning. Writes ``ladder_table.md``, ``ladder_table.csv`` and ``ladder_paired.csv``
beside the evaluation sweep's summary.

Budgets: to the target in rounds, gradient evaluations per device, MB on the air (every frame any radio sent,
retries and control frames included), simulated seconds and joules (radio and compute); the interval only
where every seed reached it, k/n always shown.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from experiments.run.atomic import write_atomically
from experiments.analysis.statistics import mean_interval, paired_differences, shown
from experiments.run.sweep import Sweep, load_sweep, write_summary
from experiments.analysis.tuning import (TuningError, algorithm_label, check_rates, chosen_rates, markdown_table, tuning_markdown,
                                tuning_table)

RUNGS = ("ns3_ideal", "ns3_random_graph", "ns3_geometry", "ns3_independent_loss", "ns3")
RUNG_NAMES = {"ns3_ideal": "ideal", "ns3_random_graph": "random graph", "ns3_geometry": "geometry",
              "ns3_independent_loss": "independent loss", "ns3": "ns-3"}
LINK, ALGORITHM, DENSITY = "network.link_model", "algorithm.name", "network.density"
SETTING = [DENSITY, ALGORITHM, LINK]
# figure, column header, digits, scale
TO_TARGET = (("conv_rounds", "rounds", 1, 1.0), ("steps_to_target", "gradients / device", 1, 1.0),
             ("air_to_target_mb", "MB on air", 0, 1.0), ("time_to_target_s", "sim s", 1, 1.0),
             ("energy_to_target_j", "J", 0, 1.0))
PAIRED_FIGURES = ("final_acc", "conv_rounds", "time_to_target_s", "energy_to_target_j")


def label(name: str) -> str:
    return RUNG_NAMES.get(name, algorithm_label(name))


def with_air_to_target(summary: pd.DataFrame, results_root: Path) -> pd.DataFrame:
    """The finished runs, with the MB on the air up to (and including) the round that reached the target."""
    done = summary[summary["status"].isin(("done", "diverged"))].copy()
    air = []
    for run_id, reached in zip(done["run_id"], done["conv_rounds"]):
        if reached != reached:
            air.append(math.nan)
            continue
        links = pd.read_csv(results_root / run_id / "links.csv", usecols=["round", "bytes_on_air"])
        air.append(float(links.loc[links["round"] <= reached, "bytes_on_air"].sum()) / 1e6)
    return done.assign(air_to_target_mb=air)


def settings_table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, group in runs.groupby(SETTING, sort=False):
        row = dict(zip(SETTING, key), runs=len(group), reached=int(group["conv_rounds"].notna().sum()))
        row["final_acc"], row["final_acc_half"] = mean_interval(group["final_acc"].astype(float))
        for figure, *_ in TO_TARGET:
            values = group[figure].astype(float)
            row[figure], row[f"{figure}_half"] = mean_interval(values)
            if values.isna().any():
                row[f"{figure}_half"] = math.nan  # an interval over the seeds that reached it would flatter
        rows.append(row)
    return pd.DataFrame(rows)


def rung_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """Each rung minus the rung below it, seed by seed, per density and algorithm."""
    frames = []
    for lower, upper in zip(RUNGS, RUNGS[1:]):
        pair = runs[runs[LINK].isin((lower, upper))]
        pair = pair.assign(_order=(pair[LINK] == upper).astype(int)).sort_values(["_order", "seed"], kind="stable")
        frames.append(paired_differences(pair, SETTING, algorithm=LINK, figures=PAIRED_FIGURES))
    return pd.concat(frames, ignore_index=True)


def ranking(table: pd.DataFrame) -> pd.DataFrame:
    """Per density and rung: the algorithms from the highest mean final accuracy down, and from the fewest
    mean simulated seconds to the target up (those that did not reach it with every seed last, with k/n)."""
    rows = []
    for (density, rung), group in table.groupby([DENSITY, LINK], sort=False):
        order = group.sort_values("final_acc", ascending=False)[ALGORITHM]
        every_seed = group["reached"] == group["runs"]
        by_time = group.assign(_all=~every_seed).sort_values(["_all", "time_to_target_s"], na_position="last")
        rows.append({DENSITY: density, LINK: rung, "order": " > ".join(label(name) for name in order),
                     "by_time": " < ".join(label(r[ALGORITHM]) + ("" if r["reached"] == r["runs"] else
                                                                 f" ({r['reached']}/{r['runs']})")
                                           for _, r in by_time.iterrows())})
    return pd.DataFrame(rows)


def _to_target(row: pd.Series, figure: str, digits: int) -> str:
    if row["reached"] == 0:
        return f"— (0/{row['runs']})"
    return f"{shown(row[figure], row[f'{figure}_half'], digits)} ({row['reached']}/{row['runs']})"


def settings_markdown(table: pd.DataFrame, target: float) -> str:
    header = ["density", "algorithm", "rung", "final acc", *[f"{name} to {target:g}" for _, name, *_ in TO_TARGET]]
    rows = [[f"{row[DENSITY]:g}", label(row[ALGORITHM]), label(row[LINK]),
             shown(row["final_acc"], row["final_acc_half"], 3),
             *[_to_target(row, figure, digits) for figure, _, digits, _ in TO_TARGET]]
            for _, row in table.iterrows()]
    return markdown_table(header, rows)


def differences_markdown(paired: pd.DataFrame) -> str:
    header = ["density", "algorithm", "rung − rung below", "pairs", "Δ final acc", "Δ rounds to target (pairs)",
              "Δ s to target (pairs)", "Δ J to target (pairs)"]
    rows = []
    for _, row in paired.iterrows():
        cells = [f"{row[DENSITY]:g}", label(row[ALGORITHM]), f"{label(row['algorithm'])} − {label(row['reference'])}",
                 str(row["pairs"]), shown(row["final_acc_diff"], row["final_acc_half"], 3, signed=True)]
        for figure, digits in (("conv_rounds", 1), ("time_to_target_s", 1), ("energy_to_target_j", 0)):
            cells.append(f"{shown(row[f'{figure}_diff'], row[f'{figure}_half'], digits, signed=True)} "
                         f"({row[f'{figure}_pairs']})")
        rows.append(cells)
    return markdown_table(header, rows)


def ranking_markdown(order: pd.DataFrame) -> str:
    rows = [[f"{row[DENSITY]:g}", label(row[LINK]), row["order"], row["by_time"]] for _, row in order.iterrows()]
    return markdown_table(["density", "rung", "by mean final accuracy", "by mean simulated seconds to the target"], rows)


def build(tuning_sweep: Sweep, evaluation_sweep: Sweep, results_root: Path) -> str:
    tuning = tuning_table(write_summary(tuning_sweep, results_root), tuning_sweep.runs[0][1].rounds)
    summary = write_summary(evaluation_sweep, results_root)
    check_rates(summary[summary["status"].isin(("done", "diverged"))], chosen_rates(tuning), evaluation_sweep.name)
    runs = with_air_to_target(summary, results_root)
    algorithms = list(dict.fromkeys(runs[ALGORITHM]))
    runs = runs.assign(_algorithm=runs[ALGORITHM].map(algorithms.index), _rung=runs[LINK].map(RUNGS.index))
    runs = runs.sort_values([DENSITY, "_algorithm", "_rung", "seed"], kind="stable")  # the tables' row order
    table = settings_table(runs)
    differences = rung_differences(runs)
    out = evaluation_sweep.summary_dir(results_root)
    write_atomically(out / "ladder_table.csv", table.to_csv(index=False, float_format="%.6g"))
    write_atomically(out / "ladder_paired.csv", differences.to_csv(index=False, float_format="%.6g"))
    seeds = sorted(runs["seed"].unique())
    target = evaluation_sweep.target_accuracy
    return "\n".join([
        f"**Learning rates**, tuned on seed {', '.join(map(str, sorted(tuning_sweep_seeds(tuning_sweep))))} "
        f"(not an evaluation seed): rounds to {target:g} averaged over the five rungs at density 0.5 (a rung "
        f"that never reached it counted as rounds + 1), rungs that reached it in brackets; bold: the rate "
        f"chosen and used below.", "",
        tuning_markdown(tuning), "",
        f"**Per setting** (means ± 95 % t intervals over seeds {', '.join(map(str, seeds))}; to the target: the "
        f"interval only when every seed reached it, k/n always shown):", "",
        settings_markdown(table, target), "",
        "**Each rung minus the rung below**, seed by seed (same seed: same data split, initial models, "
        "mini-batches, and every derived rung drawn from the same ns-3 trace); to the target over the seeds "
        "where both reached it:", "",
        differences_markdown(differences), "",
        "**Ranking along the ladder** (ties within the intervals above are not resolved by this order):", "",
        ranking_markdown(ranking(table)), ""])


def tuning_sweep_seeds(sweep: Sweep) -> set[int]:
    return {config.seed for _, config in sweep.runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.campaigns.ladder_table", description=__doc__.splitlines()[0])
    parser.add_argument("tuning", type=Path)
    parser.add_argument("evaluation", type=Path)
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    evaluation = load_sweep(args.evaluation)
    try:
        text = build(load_sweep(args.tuning), evaluation, args.results)
    except TuningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = evaluation.summary_dir(args.results)
    write_atomically(out / "ladder_table.md", text)
    print(f"written: {out}/ladder_table.md, ladder_table.csv, ladder_paired.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
