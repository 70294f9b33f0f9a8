"""The eSGD table: accuracy, MB on the air up and down, seconds a round, and rounds, seconds and joules to the
target per method on the parameter server over ns-3 and its lossless control, beside eSGD's reported MNIST
accuracies; paired differences (Holm across the report) and readings written by code.

Built from finished sweeps only (``make table-esgd`` tunes and runs them first)::

    python -m experiments.campaigns.esgd_table SWEEP.toml [...] --tuning results/tune/esgd-tuning [...]
        [--report esgd]

As the asynchronous, robust and energy tables: every rate from ``nsdml tune`` (enforced), everything shown
rendered from the per-seed runs table alone (``render``). Uplinks are the even exchanges of a round and
downlinks the odd ones (``ns3_scenarios.scenario``); their bytes on the air are read from each run's links.csv
into the per-seed CSV.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pandas as pd

from experiments.analysis import statistics
from experiments.analysis.statistics import shown
from experiments.analysis.tuning import ALGORITHM, algorithm_label, markdown_table
from experiments.campaigns.async_table import (TUNING_SUFFIX, check_tuned, difference, holm_note, separated,
                                               tuning_sections)
from experiments.campaigns.energy_table import NETWORKS, paired_against

# Tao & Li, HotEdge 2018, MNIST (parameter server, full MNIST): accuracy when keeping 50 / 25 / 12.5 %.
PAPER_ACCURACY = {0.5: 0.912, 0.25: 0.867, 0.125: 0.815}
PAPER_DENSE = 0.99  # their standard SGD baseline, about 99 %
REFERENCE = "dense SGD"
SETTING = ["network.link_model", "method"]
TO_TARGET = (("conv_rounds", 1), ("time_to_target_s", 1), ("energy_to_target_j", 0))
FIGURES = ("algorithm.lr", "max_acc", "final_acc", "mb_up", "mb_down", "seconds_per_round", *dict(TO_TARGET))
PAIRED = ("final_acc", "mb_up", "conv_rounds", "time_to_target_s", "energy_to_target_j")
UNITS = {"final_acc": ("accuracy", 3), "mb_up": ("MB up", 2), "conv_rounds": ("rounds", 1),
         "time_to_target_s": ("s", 1), "energy_to_target_j": ("J", 0)}
RUN_COLUMNS = ("sweep", "run_id", ALGORITHM, "algorithm.lr", "algorithm.keep_ratio", "network.link_model",
               "network.mode", "devices", "rounds", "seed", "status", "max_acc", "final_acc", "conv_rounds",
               "time_to_target_s", "energy_to_target_j", "sim_time_s", "mb_up", "mb_down")
SPARSE = ("esgd", "dgc")  # the methods with a keep ratio


def air_megabytes(run_dir: Path) -> tuple[float, float]:
    """(MB up, MB down): bytes on the air in a run's uplink (even) and downlink (odd) exchanges."""
    links = pd.read_csv(run_dir / "links.csv", usecols=["exchange", "bytes_on_air"])
    up = links["exchange"] % 2 == 0
    return links.loc[up, "bytes_on_air"].sum() / 1e6, links.loc[~up, "bytes_on_air"].sum() / 1e6


def runs_table(sweeps, results_root: Path) -> str:
    """The per-seed runs table (CSV text): report.per_seed_table's columns, the ones the rendering reads, and
    each finished run's MB up and down."""
    from experiments.campaigns.report import per_seed_with
    from experiments.run.run_outputs import CSV_FLOAT_FORMAT

    runs = pd.read_csv(io.StringIO(per_seed_with(sweeps, results_root, RUN_COLUMNS[:-2])))
    air = [air_megabytes(results_root / run_id) if status in ("done", "diverged") else (math.nan, math.nan)
           for run_id, status in zip(runs["run_id"], runs["status"])]
    at = list(runs.columns).index("sim_time_s") + 1
    runs.insert(at, "mb_up", [up for up, _ in air])
    runs.insert(at + 1, "mb_down", [down for _, down in air])
    return runs.to_csv(index=False, float_format=CSV_FLOAT_FORMAT)


def method(row: pd.Series) -> str:
    """'eSGD 50 %', 'DGC 25 %', 'dense SGD', 'FedAvg', 'threshold SGD'."""
    name = row[ALGORITHM]
    label = algorithm_label(name)
    return f"{label} {100 * float(row['algorithm.keep_ratio']):g} %" if name in SPARSE else label


def paper_accuracy(row: pd.Series) -> float:
    if row[ALGORITHM] == "esgd":
        return PAPER_ACCURACY.get(float(row["algorithm.keep_ratio"]), math.nan)
    return PAPER_DENSE if row[ALGORITHM] == "dense_sgd" else math.nan


def evaluation_runs(runs: pd.DataFrame) -> pd.DataFrame:
    done = runs[runs["status"].isin(("done", "diverged")) & ~runs["sweep"].str.endswith(TUNING_SUFFIX)].copy()
    return done.assign(method=done.apply(method, axis=1), paper_acc=done.apply(paper_accuracy, axis=1),
                       seconds_per_round=done["sim_time_s"] / done["rounds"])


FAMILIES = ("dense SGD", "FedAvg", "eSGD", "DGC", "threshold SGD")  # the table's order; a family's keep down


def method_order(name: str) -> tuple[int, float]:
    family = next((i for i, prefix in enumerate(FAMILIES) if name.startswith(prefix)), len(FAMILIES))
    return family, -float(name.split()[-2]) if name.endswith("%") else 0.0


def settings_table(evaluation: pd.DataFrame) -> pd.DataFrame:
    table = statistics.settings_table(evaluation, SETTING, (*FIGURES, "paper_acc"), tuple(dict(TO_TARGET)))
    order = [(NETWORKS.index(network), *method_order(name))
             for network, name in zip(table["network.link_model"], table["method"])]
    return table.iloc[sorted(range(len(table)), key=order.__getitem__)].reset_index(drop=True)


def settings_markdown(table: pd.DataFrame, target: float) -> str:
    rows = [[row["network.link_model"], row["method"], f"{row['algorithm.lr']:g}", shown(row["max_acc"], row["max_acc_half"], 3),
             shown(row["final_acc"], row["final_acc_half"], 3),
             "—" if math.isnan(row["paper_acc"]) else f"{row['paper_acc']:.3f}",
             shown(row["mb_up"], row["mb_up_half"], 2), shown(row["mb_down"], row["mb_down_half"], 2),
             shown(row["seconds_per_round"], row["seconds_per_round_half"], 2),
             *[statistics.to_target_cell(row, figure, digits) for figure, digits in TO_TARGET]]
            for _, row in table.iterrows()]
    return markdown_table(["network", "method", "lr", "max acc", "final acc", "paper acc", "MB up", "MB down", "s a round",
                           f"rounds to {target:g}", f"s to {target:g}", f"J to {target:g}"], rows)


def paired(runs: pd.DataFrame) -> pd.DataFrame:
    """Each method minus dense SGD on each network, ns-3 minus the control for each method."""
    return paired_against(runs, "method", REFERENCE, PAIRED)


def paired_markdown(differences: pd.DataFrame) -> str:
    rows = [[row["setting"], row["comparison"], str(row["pairs"]),
             *[f"{shown(row[f'{f}_diff'], row[f'{f}_half'], UNITS[f][1], signed=True)} ({row[f'{f}_pairs']})"
               + holm_note(row, f) for f in PAIRED]] for _, row in differences.iterrows()]
    return markdown_table(["setting", "comparison", "pairs", "Δ final acc", "Δ MB up", "Δ rounds to target",
                           "Δ s to target", "Δ J to target"], rows)


def told(row: pd.Series, figure: str) -> str:
    unit, digits = UNITS[figure]
    return f"{difference(row, figure, unit, digits)}, " + ("separated" if separated(row, figure) else "not separated")


def _pair(differences: pd.DataFrame, kind: str, setting: str, label: str) -> pd.Series | None:
    rows = differences[(differences["kind"] == kind) & (differences["setting"] == setting)
                       & (differences["algorithm"] == label)]
    return None if rows.empty else rows.iloc[0]


def span(values, digits: int) -> str:
    """'1.59-2.06', or one value when they are all equal at the digits shown."""
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}-{high}"


def readings(table: pd.DataFrame, differences: pd.DataFrame, target: float) -> str:
    """The paper's accuracy claim, bytes, time and energy against dense SGD, FedAvg, and what ns-3 changes
    against its control; every number from the tables."""
    lines = []
    for network in [n for n in NETWORKS if n in set(table["network.link_model"])]:
        here = table[table["network.link_model"] == network].set_index("method")
        if REFERENCE not in here.index:
            continue
        dense = here.loc[REFERENCE]
        paper = [(name, row) for name, row in here.iterrows() if name.startswith("eSGD")]
        if paper:
            told_each = "; ".join(
                f"{name} {shown(row['final_acc'], row['final_acc_half'], 3)} (paper {row['paper_acc']:.3f}; "
                f"against dense SGD {told(pair, 'final_acc')})"
                for name, row in paper if (pair := _pair(differences, "method", network, name)) is not None)
            pairs = [pair for name, _ in paper if (pair := _pair(differences, "method", network, name)) is not None]
            worst = max(-pair["final_acc_diff"] for pair in pairs) if pairs else math.nan
            lost = [PAPER_DENSE - PAPER_ACCURACY[keep] for keep in sorted(PAPER_ACCURACY)]
            verdict = ("the paper's loss to sparsification does not appear here" if pairs and worst < min(lost)
                       and not any(separated(pair, "final_acc") and pair["final_acc_diff"] < 0 for pair in pairs)
                       else "eSGD loses accuracy to sparsification here")
            gaps = [pair["final_acc_diff"] for pair in pairs]
            lines.append(f"- **{network}, accuracy against the paper's:** {verdict} (eSGD minus dense SGD "
                         f"{min(gaps):+.3f} to {max(gaps):+.3f} over the ratios; the paper's loss "
                         f"{min(lost):.3f}-{max(lost):.3f}). Final "
                         f"accuracy: dense SGD {shown(dense['final_acc'], dense['final_acc_half'], 3)} (paper ≈ "
                         f"{PAPER_DENSE:.2f}); {told_each}.")
        sparse = [name for name in here.index if name != REFERENCE]
        bytes_told = "; ".join(f"{name} {here.loc[name, 'mb_up']:.2f} MB ({here.loc[name, 'mb_up'] / dense['mb_up']:.2f} "
                               f"of dense)" for name in sparse)
        lines.append(f"- **{network}, bytes.** Up: dense SGD {dense['mb_up']:.2f} MB; {bytes_told}. Down: "
                     f"{span(here['mb_down'], 2)} MB for every method (the dense model broadcast once a round).")
        costs = "; ".join(f"{name} {told(pair, 'time_to_target_s')} and {told(pair, 'energy_to_target_j')}"
                          for name in sparse if (pair := _pair(differences, "method", network, name)) is not None)
        lines.append(f"- **{network}, time and energy to {target:g}** against dense SGD "
                     f"({shown(dense['time_to_target_s'], dense['time_to_target_s_half'], 1)} s and "
                     f"{shown(dense['energy_to_target_j'], dense['energy_to_target_j_half'], 0)} J, "
                     f"{int(dense['reached'])}/{int(dense['runs'])} seeds): {costs}. A round lasts "
                     f"{dense['seconds_per_round']:.2f} s for dense SGD and "
                     f"{span(here.loc[sparse, 'seconds_per_round'], 2)} s for the others.")
    ratios = []
    for name, group in table.groupby("method"):
        by = group.set_index("network.link_model")
        if set(NETWORKS) <= set(by.index):
            ratios.append((name, by.loc["ns3", "seconds_per_round"] / by.loc["ideal", "seconds_per_round"],
                           by.loc["ns3", "mb_up"] / by.loc["ideal", "mb_up"] - 1))
    if ratios:
        lines.append(f"- **ns-3 against its control.** A round lasts {span([r for _, r, _ in ratios], 1)} "
                     f"times as long over ns-3, and the uplinks carry "
                     f"{span([100 * u for _, _, u in ratios], 0)} % more "
                     f"bytes on the air (ACKs, retries, beacons; means over the seeds, per method).")
    return "\n".join(lines)


def render(runs: pd.DataFrame, target: float) -> str:
    evaluation = evaluation_runs(runs)
    table = settings_table(evaluation)
    differences = paired(evaluation)
    seeds = sorted(evaluation["seed"].unique())
    return "\n".join([
        f"**Reading** (written by `experiments/campaigns/esgd_table.py` from the tables below: means ± 95 % t "
        f"intervals over seeds {', '.join(map(str, seeds))}; paired differences seed by seed, to the target over "
        f"the seeds where both reached it; separated: Holm-adjusted p < 0.05 across every comparison of the "
        f"report):", "",
        readings(table, differences, target), "", *tuning_sections(runs, target),
        "**Per setting** (MB up / down: bytes on the air in the uplink and downlink windows; paper acc: Tao & "
        "Li's MNIST accuracies, full MNIST and their own model; to the target: the interval only when every seed "
        "reached it, k/n always shown):", "", settings_markdown(table, target), "",
        "**Paired comparisons** (method: a method minus dense SGD on the same network; network: ns-3 minus the "
        "ideal control for the same method):", "", paired_markdown(differences), ""])


def main(argv: list[str] | None = None) -> int:
    from experiments.campaigns.report import campaign_main

    return campaign_main(argv, Path(__file__).stem, __doc__.splitlines()[0], "table-esgd", runs_table, render,
                         check_tuned)


if __name__ == "__main__":
    sys.exit(main())
