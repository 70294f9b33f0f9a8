"""The asynchronous table: the published pairwise and one-peer algorithms (AD-PSGD, SwarmSGD, gossip learning),
their broadcast readings and asynchronous D-PSGD, against synchronous D-PSGD (rounds, local barrier), its two
ablations and synchronous HyperPrism; seconds, joules and local steps to the target, final accuracy,
staleness, with 95 % intervals, paired differences (Holm across the report) and readings written by code.

Built from finished sweeps only (``make table-async`` tunes and runs them first)::

    python -m experiments.campaigns.async_table ASYNC.toml SYNC.toml BARRIER.toml \\
        --tuning results/tune/async-tuning --tuning results/tune/async-tuning-sync [--report async]

Every rate comes from a tuning by ``nsdml tune`` (the project's one protocol, ``experiments.run.tune``), and the
evaluation sweeps must follow it (exit 2 otherwise, naming the field). **Everything shown is rendered from the
per-seed runs table alone** (``render``): with ``--report`` the command writes that table as
``experiments/reports/async-runs.csv`` and the report's measured block from it, so re-rendering the committed
CSV gives the committed text (``tests/test_asynchronous.py``) and every number of a reading sentence is computed
from the table it sits on.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pandas as pd

from experiments.analysis import statistics
from experiments.analysis.statistics import paired_differences, shown
from experiments.analysis.tuning import (ALGORITHM, algorithm_label, check_rates, chosen_rates,
                                         markdown_table, tuning_markdown, tuning_table)

SETTING = ["devices", "network.link_model", "compute", "loop", "method"]
REFERENCE = "dpsgd (rounds)"
TO_TARGET = (("steps_to_target", 1), ("time_to_target_s", 1), ("energy_to_target_j", 0))
FIGURES = ("final_acc", "steps_to_target", "time_to_target_s", "energy_to_target_j", "staleness_steps",
           "staleness_s")
PAIRED = ("final_acc", "steps_to_target", "time_to_target_s", "energy_to_target_j")
# The columns of the per-seed runs table the rendering reads (beside the generic ones of report.per_seed_table).
RUN_COLUMNS = ("sweep", "run_id", ALGORITHM, "algorithm.lr", "network.schedule", "network.link_model",
               "network.compute_model", "network.straggler_slowdown", "network.async_period_s", "devices", "rounds",
               "seed", "status", "final_acc", "conv_rounds", *FIGURES[1:4], "staleness_steps", "staleness_s")
TUNING_SUFFIX = "-tune"  # nsdml tune's sweep of tuning runs: <name>-tune (experiments.run.tune.tuning_file)
SIGNIFICANT = 0.05


def method(row: pd.Series) -> str:
    name, schedule = row[ALGORITHM], row["network.schedule"]
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


def staleness(run_dir: Path) -> tuple[float, float]:
    """The mean staleness (sender's local steps, seconds) over the messages a run merged (NaN: none, or a
    synchronous run)."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    if "merged_messages" not in metrics:
        return math.nan, math.nan
    weights = metrics["merged_messages"].fillna(0)
    total = weights.sum()
    if not total:
        return math.nan, math.nan
    return tuple(float((metrics[column].fillna(0) * weights).sum() / total)
                 for column in ("mean_staleness_steps", "mean_staleness_s"))


def runs_table(sweeps, results_root: Path) -> str:
    """The per-seed runs table (CSV text): report.per_seed_table's columns, the ones the rendering reads, and
    each run's mean staleness."""
    from experiments.campaigns.report import per_seed_table
    from experiments.run.run_outputs import CSV_FLOAT_FORMAT
    from experiments.run.sweep import collect

    generic = pd.read_csv(io.StringIO(per_seed_table(sweeps, results_root)))
    fields = pd.concat([collect(sweep, results_root).assign(sweep=sweep.name) for sweep in sweeps],
                       ignore_index=True).drop_duplicates("run_id")
    stale = [staleness(results_root / run_id) if status in ("done", "diverged") else (math.nan, math.nan)
             for run_id, status in zip(fields["run_id"], fields["status"])]
    fields = fields.assign(staleness_steps=[s for s, _ in stale], staleness_s=[s for _, s in stale])
    extra = [column for column in RUN_COLUMNS if column not in generic and column != "run_id"]
    runs = generic.merge(fields[["run_id", *extra]], on="run_id", how="left")
    order = [*RUN_COLUMNS, *[column for column in runs if column not in RUN_COLUMNS]]
    return runs[order].to_csv(index=False, float_format=CSV_FLOAT_FORMAT)


def evaluation_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished evaluation runs (not the tuning's), named by method, compute and loop."""
    done = runs[runs["status"].isin(("done", "diverged")) & ~runs["sweep"].str.endswith(TUNING_SUFFIX)].copy()
    return done.assign(method=done.apply(method, axis=1), compute=done.apply(compute_label, axis=1),
                       loop=done.apply(loop_label, axis=1))


def settings_table(runs: pd.DataFrame) -> pd.DataFrame:
    return statistics.settings_table(runs, SETTING, FIGURES, tuple(dict(TO_TARGET)))


_to_target = statistics.to_target_cell


def settings_markdown(table: pd.DataFrame, target: float) -> str:
    header = ["N", "network", "compute", "loop", "method", "final acc", f"steps to {target:g}", f"s to {target:g}",
              f"J to {target:g}", "staleness (steps)", "staleness (s)"]
    rows = [[str(row["devices"]), row["network.link_model"], row["compute"], row["loop"], row["method"],
             shown(row["final_acc"], row["final_acc_half"], 3),
             *[_to_target(row, figure, digits) for figure, digits in TO_TARGET],
             shown(row["staleness_steps"], row["staleness_steps_half"], 2),
             shown(row["staleness_s"], row["staleness_s_half"], 2)] for _, row in table.iterrows()]
    return markdown_table(header, rows)


def labelled(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's label in the comparisons: its method, and ", unthrottled" for an unthrottled loop (compared
    within its network and compute, where the reference runs under rounds)."""
    return runs.assign(label=runs["method"] + runs["loop"].map(lambda loop: ", unthrottled"
                                                               if loop == "unthrottled" else ""))


ASYNCHRONOUS = ("async_dpsgd", "adpsgd", "adpsgd_broadcast", "swarm_sgd", "swarm_sgd_broadcast", "gossip_learning",
                "gossip_learning_broadcast")


def comparisons(labels: set[str]) -> list[tuple[str, str, str]]:
    """(what, minus what, kind) for every comparison the report makes, where both sides ran: each method
    against D-PSGD under rounds; the ablations between D-PSGD and asynchronous D-PSGD (one-way links, then
    stale models, then no deadline); each published form against its broadcast reading; synchronous HyperPrism
    against asynchronous D-PSGD; each asynchronous method unthrottled against its 1.05 s loop."""
    pairs = [("dpsgd_one_way (rounds)", REFERENCE, "ablation"),
              ("dpsgd_cached (rounds)", "dpsgd_one_way (rounds)", "ablation"),
              ("async_dpsgd", "dpsgd_cached (rounds)", "ablation")]
    pairs += [(name, f"{name}_broadcast", "published") for name in ("adpsgd", "swarm_sgd", "gossip_learning")]
    pairs += [("hyperprism (rounds)", "async_dpsgd", "hyperprism")]
    pairs += [(f"{name}, unthrottled", name, "loop") for name in ASYNCHRONOUS]
    pairs += [(label, REFERENCE, "reference") for label in sorted(labels) if label != REFERENCE]
    seen = set()  # a pair made above (the ablation's first step) is not repeated against the reference
    return [pair for pair in pairs if pair[0] in labels and pair[1] in labels
            and (pair[0], pair[1]) not in seen and not seen.add((pair[0], pair[1]))]


def paired(runs: pd.DataFrame) -> pd.DataFrame:
    """Every comparison of ``comparisons``, seed by seed, per network, size and compute, in one call, so Holm's
    family is every comparison of the report. Columns as ``paired_differences``, plus ``kind``."""
    runs = labelled(runs)
    by = ["devices", "network.link_model", "compute"]
    frames = []
    for what, reference, kind in comparisons(set(runs["label"])):
        pair = runs[runs["label"].isin((what, reference))].assign(
            comparison=f"{what} − {reference}", kind=kind, _first=(runs["label"] != reference).astype(int))
        frames.append(pair.sort_values(["_first", "seed"], kind="stable"))
    if not frames:
        return pd.DataFrame()
    together = pd.concat(frames, ignore_index=True)
    differences = paired_differences(together, [*by, "comparison"], algorithm="label", figures=PAIRED)
    kinds = together.drop_duplicates("comparison").set_index("comparison")["kind"]
    return differences.assign(kind=differences["comparison"].map(kinds))


def paired_markdown(differences: pd.DataFrame) -> str:
    header = ["N", "network", "compute", "comparison", "pairs", "Δ final acc", "Δ steps (pairs)", "Δ s (pairs)",
              "Δ J (pairs)"]
    rows = []
    for _, row in differences.iterrows():
        cells = [str(row["devices"]), row["network.link_model"], row["compute"], row["comparison"],
                 str(row["pairs"]), shown(row["final_acc_diff"], row["final_acc_half"], 3, signed=True)
                 + holm_note(row, "final_acc")]
        for figure, digits in TO_TARGET:
            cells.append(f"{shown(row[f'{figure}_diff'], row[f'{figure}_half'], digits, signed=True)} "
                         f"({row[f'{figure}_pairs']})" + holm_note(row, figure))
        rows.append(cells)
    return markdown_table(header, rows)


def holm_note(row: pd.Series, figure: str) -> str:
    """", Holm p X": the paired t-test's p adjusted across every comparison of the report (none: no test)."""
    value = row.get(f"{figure}_p_holm", math.nan)
    return "" if value != value else f", Holm p {value:.2g}"


# ---- readings: sentences whose every number is read from the tables above ----

def name_of(label: str) -> str:
    """'dpsgd (rounds)' -> 'D-PSGD (rounds)'; 'adpsgd, unthrottled' -> 'AD-PSGD, unthrottled'."""
    base, _, loop = label.partition(", ")
    name, _, schedule = base.partition(" (")
    schedule = schedule.rstrip(")").replace("_", " ")
    return algorithm_label(name) + (f" ({schedule})" if schedule else "") + (f", {loop}" if loop else "")


def difference(row: pd.Series, figure: str = "time_to_target_s", unit: str = "s", digits: int = 1) -> str:
    """'−12.3 ± 4.5 s (5 pairs, Holm p 0.003)' and whether it is separated at 0.05 after Holm."""
    pairs = int(row[f"{figure}_pairs"])
    p = row.get(f"{figure}_p_holm", math.nan)
    value = shown(row[f"{figure}_diff"], row[f"{figure}_half"], digits, signed=True)
    return f"{value} {unit} ({pairs} pairs, Holm p {p:.2g})" if p == p else f"{value} {unit} ({pairs} pairs)"


def separated(row: pd.Series, figure: str = "time_to_target_s") -> bool:
    p = row.get(f"{figure}_p_holm", math.nan)
    return p == p and p < SIGNIFICANT


def verdict(row: pd.Series, faster: str, slower: str, figure: str = "time_to_target_s") -> str:
    if not separated(row, figure):
        return "not separated"
    return faster if row[f"{figure}_diff"] < 0 else slower


def setting_rows(table: pd.DataFrame, network: str, compute: str) -> pd.DataFrame:
    return table[(table["network.link_model"] == network) & (table["compute"] == compute)]


def ranking_sentence(table: pd.DataFrame, network: str, compute: str, target: float) -> str:
    rows = setting_rows(table, network, compute)
    rows = rows[rows["loop"] != "unthrottled"]
    reached = rows[rows["reached"] == rows["runs"]].sort_values("time_to_target_s")
    missed = rows[rows["reached"] < rows["runs"]]
    listed = "; ".join(f"{name_of(row['method'])} {shown(row['time_to_target_s'], row['time_to_target_s_half'], 1)}"
                       for _, row in reached.iterrows())
    text = f"Seconds to {target:g} (every seed reached it), fastest first: {listed}."
    if len(missed):
        text += " Not every seed reached it: " + "; ".join(
            f"{name_of(row['method'])} ({row['reached']}/{row['runs']})" for _, row in missed.iterrows()) + "."
    return text


def comparison_lines(differences: pd.DataFrame, kind: str, network: str, compute: str, faster: str,
                     slower: str) -> list[str]:
    rows = differences[(differences["kind"] == kind) & (differences["network.link_model"] == network)
                       & (differences["compute"] == compute)]
    return [f"{name_of(row['algorithm'])} − {name_of(row['reference'])}: {difference(row)}, "
            f"{verdict(row, faster, slower)}" for _, row in rows.iterrows()]


def readings(table: pd.DataFrame, differences: pd.DataFrame, target: float) -> str:
    """The report's reading, every number taken from ``table`` (per setting) and ``differences`` (paired)."""
    lines = []
    networks = [network for network in ("ns3", "random_graph") if network in set(table["network.link_model"])]
    for network in networks:
        where = "over ns-3 802.11a" if network == "ns3" else "on the random-graph control"
        lines.append(f"- **Constant compute, {where}.** " + ranking_sentence(table, network, "constant", target))
        against = comparison_lines(differences, "reference", network, "constant", "faster", "slower")
        against = [line for line in against if ", unthrottled" not in line]
        if against:
            lines.append(f"  - Paired against D-PSGD (rounds), seconds to {target:g}: " + "; ".join(against) + ".")
        for kind, title in (("published", "Published form minus its broadcast reading"),
                            ("ablation", "From D-PSGD to asynchronous D-PSGD, one change at a time (one-way links, "
                                         "then a last-heard cache, then no deadline)"),
                            ("hyperprism", "Synchronous HyperPrism against asynchronous D-PSGD")):
            found = comparison_lines(differences, kind, network, "constant", "faster", "slower")
            if found:
                lines.append(f"  - {title}: " + "; ".join(found) + ".")
    slow = sorted({compute for compute in table["compute"] if compute.startswith("stragglers")})
    for compute in slow:
        for network in networks:
            if setting_rows(table, network, compute).empty:
                continue
            where = "ns-3" if network == "ns3" else "the random graph"
            lines.append(f"- **Stragglers ({compute}: one device in ten that much slower) on {where}.** "
                         + ranking_sentence(table, network, compute, target))
            against = comparison_lines(differences, "reference", network, compute, "faster", "slower")
            if against:
                lines.append("  - Paired against D-PSGD (rounds) with the same stragglers: " + "; ".join(against)
                             + ".")
    for network in networks:
        loop = comparison_lines(differences, "loop", network, "constant", "faster unthrottled",
                                "slower unthrottled")
        if loop:
            where = "ns-3" if network == "ns3" else "the random graph"
            lines.append(f"- **Unthrottled loop on {where}** (each method minus itself at the 1.05 s loop, seconds "
                         f"to {target:g}): " + "; ".join(loop) + ".")
    return "\n".join(lines)


def tuning_section(tuning: pd.DataFrame, name: str, seeds: list[int], target: float) -> str:
    rates = chosen_rates(tuning)
    edges = [f"{algorithm_label(algorithm)} (lr {rates[algorithm]:g})" for algorithm, group in tuning.groupby(ALGORITHM)
             if rates[algorithm] in (group["algorithm.lr"].min(), group["algorithm.lr"].max())]
    note = (" Every choice is interior." if not edges else
            f" On a grid edge (the widening stopped at a bound of [1e-4, 100] or found no better rate): "
            f"{', '.join(edges)}.")
    return (f"**Learning rates: {name}** (`nsdml tune`, seeds {', '.join(map(str, seeds))}, not reported): "
            f"evaluation periods (rounds) to {target:g} averaged over the tuning settings, one that never reached it "
            f"counted as periods + 1, settings that reached it in brackets; bold: the rate chosen and used below."
            f"{note}\n\n{tuning_markdown(tuning)}")


def tuning_sections(runs: pd.DataFrame, target: float) -> list[str]:
    """Each tuning of a per-seed runs table (its nsdml tune sweeps) as a report section, each then a blank line."""
    sections = []
    for sweep, group in runs[runs["sweep"].str.endswith(TUNING_SUFFIX)].groupby("sweep", sort=True):
        tuning = tuning_table(group, int(group["rounds"].iloc[0]))
        sections += [tuning_section(tuning, sweep.removesuffix(TUNING_SUFFIX), sorted(group["seed"].unique()),
                                    target), ""]
    return sections


def render(runs: pd.DataFrame, target: float) -> str:
    """The whole measured text from the per-seed runs table alone (``runs_table``): the readings, the tunings,
    the settings and the paired comparisons."""
    runs = runs.copy()
    evaluation = evaluation_runs(runs)
    table = settings_table(evaluation)
    differences = paired(evaluation)
    seeds = sorted(evaluation["seed"].unique())
    return "\n".join([
        f"**Reading** (written by `experiments/campaigns/async_table.py` from the tables below: means ± 95 % t "
        f"intervals over seeds {', '.join(map(str, seeds))}; paired differences seed by seed, to the target over "
        f"the seeds where both reached it; separated: Holm-adjusted p < {SIGNIFICANT:g} across every comparison "
        f"of the report):", "",
        readings(table, differences, target), "",
        *tuning_sections(runs, target),
        f"**Per setting** (means ± 95 % t intervals over seeds {', '.join(map(str, seeds))}; steps: local steps "
        f"(gradient evaluations) per device; to the target: the interval only when every seed reached it, k/n "
        f"always shown; staleness: mean over the messages merged):", "",
        settings_markdown(table, target), "",
        "**Paired comparisons**, seed by seed (to the target over the seeds where both reached it; Holm p: the "
        "paired t-test's p adjusted by Holm across every comparison below):", "",
        paired_markdown(differences), ""])


def check_tuned(runs: pd.DataFrame) -> None:
    """Every evaluation run at the rate its algorithm's tuning chose (one rate per algorithm)."""
    rates = {}
    for _, group in runs[runs["sweep"].str.endswith(TUNING_SUFFIX)].groupby("sweep"):
        rates.update(chosen_rates(tuning_table(group, int(group["rounds"].iloc[0]))))
    evaluation = runs[~runs["sweep"].str.endswith(TUNING_SUFFIX) & runs["status"].isin(("done", "diverged"))]
    for sweep, group in evaluation.groupby("sweep"):
        check_rates(group, rates, sweep)


def main(argv: list[str] | None = None) -> int:
    from experiments.campaigns.report import campaign_main

    return campaign_main(argv, Path(__file__).stem, __doc__.splitlines()[0], "table-async", runs_table, render,
                         check_tuned)


if __name__ == "__main__":
    sys.exit(main())
