"""The robust table: D-PSGD's mean against the Byzantine-robust rules under model attacks and a jammer, over the
ideal graph, the random-graph control and ns-3; the honest devices' final accuracy and seconds and joules to the
target, with 95 % intervals, paired differences (Holm across the report) and readings written by code.

Built from finished sweeps only (``make table-robust`` tunes and runs them first)::

    python -m experiments.campaigns.robust_table ROBUST.toml JAMMER.toml --tuning results/tune/robust-tuning
        [--report robust]

As the asynchronous table (``async_table``): every rate from ``nsdml tune`` (enforced), everything shown rendered
from the per-seed runs table alone (``render``), so the committed CSV re-renders the committed text.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from experiments.analysis import statistics
from experiments.analysis.statistics import paired_differences, shown
from experiments.analysis.tuning import ALGORITHM, algorithm_label, markdown_table
from experiments.campaigns.async_table import (TUNING_SUFFIX, check_tuned, difference, holm_note, separated,
                                               tuning_sections)

REFERENCE = "dpsgd"
SETTING = ["network.link_model", "attack", "fraction", ALGORITHM]
FIGURES = ("algorithm.lr", "final_acc", "time_to_target_s", "energy_to_target_j")  # lr: one per algorithm
TO_TARGET = (("time_to_target_s", 1), ("energy_to_target_j", 0))
RUN_COLUMNS = ("sweep", "run_id", ALGORITHM, "algorithm.lr", "network.link_model", "byzantine.fraction",
               "byzantine.attack", "network.jammer_duty_cycle", "devices", "rounds", "seed", "status", "final_acc",
               "conv_rounds", "time_to_target_s", "energy_to_target_j")
NAMES = {"dpsgd": "D-PSGD (mean)"}  # the others by their names in experiments.analysis.tuning


def label(name: str) -> str:
    return NAMES.get(name, algorithm_label(name))
ATTACK_ORDER = ("none", "sign_flip", "alie", "ipm", "dissensus", "label_flip", "negation", "gaussian", "jammer")


def threat(row: pd.Series) -> tuple[str, float]:
    """(attack, Byzantine fraction) of a run: "none" and 0 without attackers, "jammer" with a jammer."""
    if float(row.get("network.jammer_duty_cycle", 0) or 0) > 0:
        return "jammer", 0.0
    fraction = row.get("byzantine.fraction", math.nan)
    if fraction != fraction or float(fraction) == 0:
        return "none", 0.0
    return str(row["byzantine.attack"]), float(fraction)


def runs_table(sweeps, results_root: Path) -> str:
    """The per-seed runs table (CSV text): report.per_seed_table's columns and the ones the rendering reads."""
    from experiments.campaigns.report import per_seed_with

    return per_seed_with(sweeps, results_root, RUN_COLUMNS)


def evaluation_runs(runs: pd.DataFrame) -> pd.DataFrame:
    done = runs[runs["status"].isin(("done", "diverged")) & ~runs["sweep"].str.endswith(TUNING_SUFFIX)].copy()
    threats = done.apply(threat, axis=1)
    return done.assign(attack=[a for a, _ in threats], fraction=[f for _, f in threats])


def settings_markdown(table: pd.DataFrame, target: float) -> str:
    rows = [[row["network.link_model"], row["attack"], f"{row['fraction']:g}", label(row[ALGORITHM]),
             f"{row['algorithm.lr']:g}",
             shown(row["final_acc"], row["final_acc_half"], 3),
             *[statistics.to_target_cell(row, figure, digits) for figure, digits in TO_TARGET]]
            for _, row in table.iterrows()]
    return markdown_table(["network", "attack", "Byzantine", "aggregation", "lr", "honest final acc", f"s to {target:g}",
                           f"J to {target:g}"], rows)


def paired(runs: pd.DataFrame) -> pd.DataFrame:
    """Every comparison in one call (Holm's family: the report): each robust rule minus D-PSGD's mean under the
    same threat and network ("rule"), and each threat minus no attack for the same rule and network ("drop")."""
    frames = []
    for (network, attack, fraction), group in runs.groupby(["network.link_model", "attack", "fraction"]):
        for name in sorted(set(group[ALGORITHM]) - {REFERENCE}):
            pair = group[group[ALGORITHM].isin((name, REFERENCE))]
            frames.append(pair.assign(label=pair[ALGORITHM], kind="rule",
                                      comparison=f"{name} − {REFERENCE}, {attack} {fraction:g}",
                                      _first=(pair[ALGORITHM] != REFERENCE).astype(int)))
    quiet = runs[runs["attack"] == "none"]
    for (network, attack, fraction, name), group in runs[runs["attack"] != "none"].groupby(
            ["network.link_model", "attack", "fraction", ALGORITHM]):
        base = quiet[(quiet["network.link_model"] == network) & (quiet[ALGORITHM] == name)]
        pair = pd.concat([base, group])
        labels = [f"{name}, none" if quiet_row else f"{name}, {attack} {fraction:g}"
                  for quiet_row in pair["attack"] == "none"]
        frames.append(pair.assign(label=labels, kind="drop", comparison=f"{name}: {attack} {fraction:g} − none",
                                  _first=(pair["attack"] != "none").astype(int)))
    if not frames:
        return pd.DataFrame()
    together = pd.concat([frame.sort_values(["_first", "seed"], kind="stable") for frame in frames], ignore_index=True)
    differences = paired_differences(together, ["network.link_model", "comparison"], algorithm="label",
                                     figures=("final_acc", "time_to_target_s", "energy_to_target_j"))
    kinds = together.drop_duplicates("comparison").set_index("comparison")["kind"]
    return differences.assign(kind=differences["comparison"].map(kinds))


def paired_markdown(differences: pd.DataFrame) -> str:
    rows = [[row["network.link_model"], row["comparison"], str(row["pairs"]),
             shown(row["final_acc_diff"], row["final_acc_half"], 3, signed=True) + holm_note(row, "final_acc"),
             *[f"{shown(row[f'{f}_diff'], row[f'{f}_half'], d, signed=True)} ({row[f'{f}_pairs']})" + holm_note(row, f)
               for f, d in TO_TARGET]] for _, row in differences.iterrows()]
    return markdown_table(["network", "comparison", "pairs", "Δ honest final acc", "Δ s (pairs)", "Δ J (pairs)"], rows)


def readings(table: pd.DataFrame, differences: pd.DataFrame) -> str:
    """Per network and threat: the aggregation with the highest honest final accuracy, and each rule's drop
    from no attack (every number from the tables)."""
    lines = []
    for network in [n for n in ("ideal", "random_graph", "ns3") if n in set(table["network.link_model"])]:
        here = table[table["network.link_model"] == network]
        for (attack, fraction), group in sorted(here[here["attack"] != "none"].groupby(["attack", "fraction"]),
                                                key=lambda item: (ATTACK_ORDER.index(item[0][0])
                                                                  if item[0][0] in ATTACK_ORDER else 99, item[0][1])):
            best = group.sort_values("final_acc", ascending=False).iloc[0]
            drops = differences[(differences["kind"] == "drop") & (differences["network.link_model"] == network)
                                & differences["comparison"].str.contains(f": {attack} {fraction:g} − none",
                                                                         regex=False)]
            told = "; ".join(
                f"{label(row['comparison'].split(':')[0])} "
                f"{difference(row, 'final_acc', 'accuracy', 3)}, "
                + ("separated" if separated(row, "final_acc") else "not separated")
                for _, row in drops.iterrows())
            who = f"{attack} at {fraction:g}" if attack != "jammer" else "a jammer at half the air"
            lines.append(f"- **{network}, {who}.** Highest honest final accuracy: "
                         f"{label(best[ALGORITHM])} "
                         f"{shown(best['final_acc'], best['final_acc_half'], 3)}. Change from no attack: {told}.")
    return "\n".join(lines)


def render(runs: pd.DataFrame, target: float) -> str:
    evaluation = evaluation_runs(runs)
    table = statistics.settings_table(evaluation, SETTING, FIGURES, tuple(dict(TO_TARGET)))
    differences = paired(evaluation)
    seeds = sorted(evaluation["seed"].unique())
    return "\n".join([
        f"**Reading** (written by `experiments/campaigns/robust_table.py` from the tables below: means ± 95 % t "
        f"intervals over seeds {', '.join(map(str, seeds))}; paired differences seed by seed; separated: "
        f"Holm-adjusted p < 0.05 across every comparison of the report):", "",
        readings(table, differences), "", *tuning_sections(runs, target),
        "**Per setting** (the honest devices' figures):", "", settings_markdown(table, target), "",
        "**Paired comparisons** (rule: a robust rule minus D-PSGD's mean under the same threat; drop: a threat "
        "minus no attack for the same aggregation):", "", paired_markdown(differences), ""])


def main(argv: list[str] | None = None) -> int:
    from experiments.campaigns.report import campaign_main

    return campaign_main(argv, Path(__file__).stem, __doc__.splitlines()[0], "table-robust", runs_table, render,
                         check_tuned)


if __name__ == "__main__":
    sys.exit(main())
