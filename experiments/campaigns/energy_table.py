"""The energy table: dense D-PSGD against CHOCO-SGD (top-10 % compressed differences) over real ns-3 802.11a and
its ideal control; rounds, seconds and joules to the target with 95 % intervals, the bytes each message carries
and the joules a round costs, paired differences (Holm across the report) and readings written by code.

Built from finished sweeps only (``make table-energy`` tunes and runs them first)::

    python -m experiments.campaigns.energy_table ENERGY.toml --tuning results/tune/energy-tuning [--report energy]

As the asynchronous and robust tables: every rate from ``nsdml tune`` (enforced), everything shown rendered from
the per-seed runs table alone (``render``), so the committed CSV re-renders the committed text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from experiments.analysis import statistics
from experiments.analysis.statistics import paired_differences, shown
from experiments.analysis.tuning import ALGORITHM, algorithm_label, markdown_table
from experiments.campaigns.async_table import (TUNING_SUFFIX, check_tuned, difference, holm_note, separated,
                                               tuning_sections)

REFERENCE = "dpsgd"
NETWORKS = ("ns3", "ideal")  # the real channel, then its control
SETTING = ["network.link_model", ALGORITHM]
TO_TARGET = (("conv_rounds", 1), ("time_to_target_s", 1), ("energy_to_target_j", 0))
FIGURES = ("algorithm.lr", "final_acc", "message_bytes", "joules_per_round", *dict(TO_TARGET))
PAIRED = ("final_acc", "joules_per_round", *dict(TO_TARGET))
RUN_COLUMNS = ("sweep", "run_id", ALGORITHM, "algorithm.lr", "network.link_model", "devices", "rounds", "seed",
               "status", "final_acc", "conv_rounds", "time_to_target_s", "energy_to_target_j", "energy_j",
               "bytes_sent")
UNITS = {"final_acc": ("accuracy", 3), "joules_per_round": ("J a round", 2), "conv_rounds": ("rounds", 1),
         "time_to_target_s": ("s", 1), "energy_to_target_j": ("J", 0)}


def runs_table(sweeps, results_root: Path) -> str:
    """The per-seed runs table (CSV text): report.per_seed_table's columns and the ones the rendering reads."""
    from experiments.campaigns.report import per_seed_with

    return per_seed_with(sweeps, results_root, RUN_COLUMNS)


def evaluation_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished evaluation runs with what one message carries (bytes on the air / rounds / devices) and the
    joules of a round (all devices, radio and compute)."""
    done = runs[runs["status"].isin(("done", "diverged")) & ~runs["sweep"].str.endswith(TUNING_SUFFIX)].copy()
    return done.assign(message_bytes=done["bytes_sent"] / (done["rounds"] * done["devices"]),
                       joules_per_round=done["energy_j"] / done["rounds"])


def settings_markdown(table: pd.DataFrame, target: float) -> str:
    rows = [[row["network.link_model"], algorithm_label(row[ALGORITHM]), f"{row['algorithm.lr']:g}",
             shown(row["final_acc"], row["final_acc_half"], 3),
             f"{row['message_bytes']:,.0f}", shown(row["joules_per_round"], row["joules_per_round_half"], 2),
             *[statistics.to_target_cell(row, figure, digits) for figure, digits in TO_TARGET]]
            for _, row in table.iterrows()]
    return markdown_table(["network", "algorithm", "lr", "final acc", "B a message", "J a round", f"rounds to {target:g}",
                           f"s to {target:g}", f"J to {target:g}"], rows)


def paired_against(runs: pd.DataFrame, column: str, reference: str, figures: tuple[str, ...]) -> pd.DataFrame:
    """Every comparison in one call (Holm's family: the report): each ``column`` value minus ``reference`` on the
    same network (kind ``column``), and ns-3 minus its ideal control for the same value (kind "network");
    keyed by kind, setting (the network, or the value) and comparison, ``algorithm`` the one compared."""
    frames = []
    for network, group in runs.groupby("network.link_model"):
        for name in sorted(set(group[column]) - {reference}):
            pair = group[group[column].isin((name, reference))]
            frames.append(pair.assign(label=pair[column], kind=column, setting=network,
                                      comparison=f"{name} − {reference}", _first=(pair[column] != reference)))
    for name, group in runs.groupby(column):
        if set(NETWORKS) <= set(group["network.link_model"]):
            pair = group[group["network.link_model"].isin(NETWORKS)]
            frames.append(pair.assign(label=pair["network.link_model"], kind="network", setting=name,
                                      comparison="ns3 − ideal", _first=(pair["network.link_model"] == "ns3")))
    if not frames:
        return pd.DataFrame()
    together = pd.concat([frame.sort_values(["_first", "seed"], kind="stable") for frame in frames], ignore_index=True)
    return paired_differences(together, ["kind", "setting", "comparison"], algorithm="label", figures=figures)


def paired(runs: pd.DataFrame) -> pd.DataFrame:
    """CHOCO-SGD minus D-PSGD on each network, ns-3 minus the control for each algorithm."""
    return paired_against(runs, ALGORITHM, REFERENCE, PAIRED)


def paired_markdown(differences: pd.DataFrame) -> str:
    rows = [[row["setting"], row["comparison"], str(row["pairs"]),
             *[f"{shown(row[f'{f}_diff'], row[f'{f}_half'], UNITS[f][1], signed=True)} ({row[f'{f}_pairs']})"
               + holm_note(row, f) for f in PAIRED]] for _, row in differences.iterrows()]
    return markdown_table(["setting", "comparison", "pairs", "Δ final acc", "Δ J a round", "Δ rounds to target",
                           "Δ s to target", "Δ J to target"], rows)


def told(row: pd.Series, figure: str) -> str:
    unit, digits = UNITS[figure]
    return f"{difference(row, figure, unit, digits)}, " + ("separated" if separated(row, figure) else "not separated")


def readings(table: pd.DataFrame, differences: pd.DataFrame, target: float) -> str:
    """Per network: what each algorithm sends and spends, and whether it reaches the target for fewer joules
    than D-PSGD; then what ns-3 changes against its control (every number from the tables)."""
    lines = []
    for network in [n for n in NETWORKS if n in set(table["network.link_model"])]:
        here = table[table["network.link_model"] == network].set_index(ALGORITHM)
        if REFERENCE not in here.index:
            continue
        reference = here.loc[REFERENCE]
        for name in [n for n in here.index if n != REFERENCE]:
            row = here.loc[name]
            ratio = reference["message_bytes"] / row["message_bytes"]
            pair = differences[(differences["kind"] == ALGORITHM) & (differences["setting"] == network)
                               & (differences["algorithm"] == name)]
            if pair.empty:
                continue
            pair = pair.iloc[0]
            lines.append(
                f"- **{network}.** {algorithm_label(name)} sends {row['message_bytes']:,.0f} B a message against "
                f"D-PSGD's {reference['message_bytes']:,.0f} B ({ratio:.1f} times fewer). Its round costs "
                f"{row['joules_per_round']:.2f} J against D-PSGD's {reference['joules_per_round']:.2f} J, "
                f"{100 * (1 - row['joules_per_round'] / reference['joules_per_round']):.0f} % less for "
                f"{100 * (1 - row['message_bytes'] / reference['message_bytes']):.0f} % fewer bytes (paired: "
                f"{told(pair, 'joules_per_round')}). It reaches {target:g} in {int(row['reached'])}/"
                f"{int(row['runs'])} seeds and D-PSGD in {int(reference['reached'])}/{int(reference['runs'])}; "
                f"against D-PSGD, joules to {target:g}: {told(pair, 'energy_to_target_j')}; seconds: "
                f"{told(pair, 'time_to_target_s')}; final accuracy: {told(pair, 'final_acc')}.")
    for name in (REFERENCE, *sorted(set(table[ALGORITHM]) - {REFERENCE})):
        pair = differences[(differences["kind"] == "network") & (differences["setting"] == name)]
        if not pair.empty:
            pair = pair.iloc[0]
            lines.append(f"- **ns-3 against its ideal control, {algorithm_label(name)}.** A round: "
                         f"{told(pair, 'joules_per_round')}; joules to {target:g}: "
                         f"{told(pair, 'energy_to_target_j')}; seconds: {told(pair, 'time_to_target_s')}.")
    return "\n".join(lines)


def render(runs: pd.DataFrame, target: float) -> str:
    evaluation = evaluation_runs(runs)
    table = statistics.settings_table(evaluation, SETTING, FIGURES, tuple(dict(TO_TARGET)))
    table = table.sort_values("network.link_model", key=lambda column: column.map(
        lambda network: NETWORKS.index(network) if network in NETWORKS else len(NETWORKS)), kind="stable")
    differences = paired(evaluation)
    seeds = sorted(evaluation["seed"].unique())
    return "\n".join([
        f"**Reading** (written by `experiments/campaigns/energy_table.py` from the tables below: means ± 95 % t "
        f"intervals over seeds {', '.join(map(str, seeds))}; paired differences seed by seed, to the target over "
        f"the seeds where both reached it; separated: Holm-adjusted p < 0.05 across every comparison of the "
        f"report; joules: all devices, radio and compute):", "",
        readings(table, differences, target), "", *tuning_sections(runs, target),
        "**Per setting** (B a message: bytes on the air / rounds / devices; to the target: the interval only when "
        "every seed reached it, k/n always shown):", "", settings_markdown(table, target), "",
        "**Paired comparisons** (algorithm: CHOCO-SGD minus D-PSGD on the same network; network: ns-3 minus the "
        "ideal control for the same algorithm):", "", paired_markdown(differences), ""])


def main(argv: list[str] | None = None) -> int:
    from experiments.campaigns.report import campaign_main

    return campaign_main(argv, Path(__file__).stem, __doc__.splitlines()[0], "table-energy", runs_table, render,
                         check_tuned)


if __name__ == "__main__":
    sys.exit(main())
