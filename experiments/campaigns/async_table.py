"""The asynchronous table: AD-PSGD, SwarmSGD, gossip learning and asynchronous D-PSGD against synchronous D-PSGD
(rounds, local barrier), over 802.11a and the random graph, with and without stragglers; seconds, joules and
local steps to the target, final accuracy, staleness, with 95 % intervals and paired differences.

Built from finished sweeps' CSVs only (``make table-async`` runs them first)::

    python -m experiments.campaigns.async_table TUNING.toml ASYNC.toml SYNC.toml [--results results]

The asynchronous algorithms' learning rates come from the tuning sweep by ``experiments.analysis.tuning``'s rule, which
the asynchronous sweep must follow (exit 2 otherwise); the synchronous reference uses the time table's rate.

Writes ``async_table.md`` and ``async_table.csv`` beside the first sweep's summary. Per setting (N, network,
compute, method): the final accuracy, local steps per device, simulated seconds and joules to the target
(mean ± 95 % t interval when every seed reached it; k/n always shown), the mean staleness of the messages
merged (asynchronous methods: the sender's local steps since the send, and the age in seconds). Paired: each
method minus D-PSGD under rounds, seed by seed (same seed: same data split, initial models and mini-batches).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from experiments.run.atomic import write_atomically
from experiments.analysis import statistics
from experiments.analysis.statistics import paired_differences, shown
from experiments.run.sweep import load_sweep, write_summary
from experiments.analysis.tuning import TuningError, check_rates, chosen_rates, tuning_markdown, tuning_table

SETTING = ["devices", "network.link_model", "compute", "loop", "method"]
REFERENCE = "dpsgd (rounds)"
TO_TARGET = (("steps_to_target", 1), ("time_to_target_s", 1), ("energy_to_target_j", 0))
FIGURES = ("final_acc", "steps_to_target", "time_to_target_s", "energy_to_target_j", "staleness_steps",
           "staleness_s")


def method(row: pd.Series) -> str:
    name, schedule = row["algorithm.name"], row["network.schedule"]
    return name if schedule == "async" else f"{name} ({schedule})"


def compute_label(row: pd.Series) -> str:
    """The compute model, with the stragglers' slowdown (stragglers slower than the loop period are a setting
    of their own)."""
    name = row["network.compute_model"]
    return f"{name} x{row['network.straggler_slowdown']:g}" if name == "stragglers" else name


def loop_label(row: pd.Series) -> str:
    """How often an asynchronous device may send: at most once per ``async_period_s``, or unthrottled (0)."""
    if row["network.schedule"] != "async":
        return "rounds" if row["network.schedule"] == "rounds" else "barrier"
    period = float(row["network.async_period_s"])
    return f">= {period:g} s" if period > 0 else "unthrottled"


def per_run(summary: pd.DataFrame, results_root: Path) -> pd.DataFrame:
    """The finished runs, named by method, with their setting's compute and loop labels and their mean
    staleness over the merges (from metrics.csv)."""
    done = summary[summary["status"].isin(("done", "diverged"))].copy()
    done["method"] = done.apply(method, axis=1)
    done["compute"] = done.apply(compute_label, axis=1)
    done["loop"] = done.apply(loop_label, axis=1)
    stale_steps, stale_s = [], []
    for run_id in done["run_id"]:
        metrics = pd.read_csv(results_root / run_id / "metrics.csv")
        if "merged_messages" not in metrics:
            stale_steps.append(math.nan)
            stale_s.append(math.nan)
            continue
        weights = metrics["merged_messages"].fillna(0)
        total = weights.sum()
        stale_steps.append(float((metrics["mean_staleness_steps"].fillna(0) * weights).sum() / total) if total else math.nan)
        stale_s.append(float((metrics["mean_staleness_s"].fillna(0) * weights).sum() / total) if total else math.nan)
    return done.assign(staleness_steps=stale_steps, staleness_s=stale_s)


def settings_table(runs: pd.DataFrame) -> pd.DataFrame:
    return statistics.settings_table(runs, SETTING, FIGURES, tuple(dict(TO_TARGET)))


_to_target = statistics.to_target_cell


def settings_markdown(table: pd.DataFrame, target: float) -> str:
    header = ["N", "network", "compute", "loop", "method", "final acc", f"steps to {target:g}", f"s to {target:g}",
              f"J to {target:g}", "staleness (steps)", "staleness (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row["devices"]), row["network.link_model"], row["compute"], row["loop"], row["method"],
                 shown(row["final_acc"], row["final_acc_half"], 3),
                 *[_to_target(row, figure, digits) for figure, digits in TO_TARGET],
                 shown(row["staleness_steps"], row["staleness_steps_half"], 2),
                 shown(row["staleness_s"], row["staleness_s_half"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(runs: pd.DataFrame) -> pd.DataFrame:
    """Each method minus D-PSGD under rounds, seed by seed, per network, size and compute (the reference runs
    under rounds, whatever the asynchronous loop's period): one call, so Holm's family is every comparison of
    the report."""
    by = [column for column in SETTING if column not in ("loop", "method")]
    ranked = runs.assign(_reference=(runs["method"] != REFERENCE).astype(int),
                         method=runs["method"] + runs["loop"].map(lambda loop: "" if loop in ("rounds", "barrier")
                                                                  else f", {loop}")).sort_values(
        ["_reference", "method", "seed"], kind="stable")
    return paired_differences(ranked, by, algorithm="method",
                              figures=("final_acc", "steps_to_target", "time_to_target_s", "energy_to_target_j"))


def paired_markdown(differences: pd.DataFrame) -> str:
    header = ["N", "network", "compute", "method − dpsgd (rounds)", "pairs", "Δ final acc", "Δ steps (pairs)",
              "Δ s (pairs)", "Δ J (pairs)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in differences.iterrows():
        cells = [str(row["devices"]), row["network.link_model"], row["compute"], row["algorithm"],
                 str(row["pairs"]), shown(row["final_acc_diff"], row["final_acc_half"], 3, signed=True)
                 + holm_note(row, "final_acc")]
        for figure, digits in TO_TARGET:
            cells.append(f"{shown(row[f'{figure}_diff'], row[f'{figure}_half'], digits, signed=True)} "
                         f"({row[f'{figure}_pairs']})" + holm_note(row, figure))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def holm_note(row: pd.Series, figure: str) -> str:
    """", Holm p X": the paired t-test's p adjusted across every comparison of the report (none: no test)."""
    value = row.get(f"{figure}_p_holm", math.nan)
    return "" if value != value else f", Holm p {value:.2g}"


def build(tuning_path: Path, sweep_paths: list[Path], results_root: Path) -> tuple[str, pd.DataFrame]:
    tuning_sweep = load_sweep(tuning_path)
    tuning = tuning_table(write_summary(tuning_sweep, results_root), tuning_sweep.runs[0][1].rounds)
    sweeps = [load_sweep(path) for path in sweep_paths]
    summaries = [write_summary(sweep, results_root) for sweep in sweeps]
    asynchronous = summaries[0][summaries[0]["status"].isin(("done", "diverged"))]
    check_rates(asynchronous, chosen_rates(tuning), sweeps[0].name)
    runs = pd.concat([per_run(summary, results_root) for summary in summaries], ignore_index=True)
    table = settings_table(runs)
    target = sweeps[0].target_accuracy
    seeds = sorted(runs["seed"].unique())
    text = "\n".join([
        f"**Learning rates** of the asynchronous algorithms, tuned on seed 0 (not an evaluation seed): periods to "
        f"{target:g} averaged over the tuning settings (one that never reached it counted as periods + 1), "
        f"settings that reached it in brackets; bold: the rate chosen and used below.", "",
        tuning_markdown(tuning), "",
        f"**Per setting** (means ± 95 % t intervals over seeds {', '.join(map(str, seeds))}; steps: local steps "
        f"(gradient evaluations) per device; to the target: the interval only when every seed reached it, k/n "
        f"always shown; staleness: mean over the messages merged):", "",
        settings_markdown(table, target), "",
        f"**Each method minus {REFERENCE}**, seed by seed (to the target over the seeds where both reached it; "
        f"Holm p: the paired t-test's p adjusted by Holm across every comparison below, significant below "
        f"0.05):", "",
        paired_markdown(paired(runs)), ""])
    return text, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.campaigns.async_table", description=__doc__.splitlines()[0])
    parser.add_argument("tuning", type=Path)
    parser.add_argument("sweeps", type=Path, nargs="+", help="the asynchronous sweep first, then the references")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    try:
        text, table = build(args.tuning, args.sweeps, args.results)
    except TuningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = load_sweep(args.sweeps[0]).summary_dir(args.results)
    write_atomically(out / "async_table.md", text)
    write_atomically(out / "async_table.csv", table.to_csv(index=False, float_format="%.6g"))
    print(f"written: {out}/async_table.md, async_table.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
