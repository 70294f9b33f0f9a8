"""DeTAG's comparison: DeTAG against DeFacto, DSGT, D², SGP and D-PSGD in the paper's setting (fixed circulant
graphs of spectral gap 1 to 0.0096, shuffled data) and over 802.11a (Dirichlet α x link density on ns-3); what each
spends to the target in four currencies (gradients, bytes on the air, seconds, joules) with 95 % intervals, paired
differences against DeTAG (Holm across the report) and readings written by code.

Built from finished sweeps only (``make table-detag`` tunes and runs them first)::

    python -m experiments.campaigns.detag_table PAPER.toml WIRELESS.toml --tuning results/tune/detag-paper-tuning
        --tuning results/tune/detag-wireless-tuning [--report detag]

Each setting has its own tuning (``nsdml tune`` on seed 0, enforced: ``check_tuned``). Everything shown is
rendered from the per-seed runs table alone (``render``), so the committed CSV re-renders the committed text.

**Censoring.** A run that never reached the target has no figure to it; dropping it would compare survivors.
In the paired comparisons such a run counts as its whole budget (every gradient, byte, second and joule of its
``rounds``): a lower bound of what it would have needed, so a difference in favour of the method that reached the
target is, if anything, understated. A pair says nothing, and is left out, where neither reached it, or where the
censored run's budget is less than what the other needed (DSGT's 100 gradients against DeTAG's 190 on the ring:
DSGT might have needed fewer or more); the number of pairs with one side censored is shown.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.analysis import statistics
from experiments.analysis.statistics import mean_interval, paired_p, shown
from experiments.analysis.tuning import ALGORITHM, algorithm_label, check_rates, chosen_rates, markdown_table, \
    tuning_table
from experiments.campaigns.async_table import TUNING_SUFFIX, holm_note, separated, tuning_sections

REFERENCE = "detag"
ORDER = ("detag", "defacto", "d2", "dsgt", "sgp", "dpsgd")
PAPER, WIRELESS = "detag-paper", "detag-wireless"
CLAIMED = ("dpsgd", "d2", "dsgt", "sgp")  # the paper's claim: DeTAG converges faster than these
CELL = {PAPER: ["data.shuffled_fraction", "spectral_gap"], WIRELESS: ["data.alpha", "network.density"]}
# Each figure to the target and the budget a run that never reached it is charged (censoring, see above).
CURRENCIES = (("conv_rounds", "rounds", "rounds", 0), ("steps_to_target", "local_steps", "gradients", 0),
              ("bytes_to_target", "bytes_on_air", "MB", 1),
              ("time_to_target_s", "sim_time_s", "s", 0), ("energy_to_target_j", "energy_j", "J", 0))
FIGURES = ("algorithm.lr", "final_acc", *(figure for figure, *_ in CURRENCIES))
PAIRED = ("final_acc", *(figure for figure, *_ in CURRENCIES))  # compared seed by seed against DeTAG
RUN_COLUMNS = ("sweep", "run_id", ALGORITHM, "algorithm.lr", "network.link_model", "data.shuffled_fraction",
               "network.topology_degree", "spectral_gap", "data.alpha", "network.density", "devices", "rounds",
               "seed", "status", "final_acc", "conv_rounds", "steps_to_target", "local_steps", "bytes_to_target",
               "bytes_on_air", "time_to_target_s", "sim_time_s", "energy_to_target_j", "energy_j")
SCALE = {"bytes_to_target": 1e-6, "bytes_on_air": 1e-6}  # shown in MB


def bytes_to_target(run_dir: Path, conv_rounds: float) -> float:
    """Bytes on the air, all devices, from the start to the round that first reached the target (NaN: never)."""
    if conv_rounds != conv_rounds:
        return math.nan
    links = pd.read_csv(run_dir / "links.csv", usecols=["round", "bytes_on_air"])
    return float(links.loc[links["round"] <= conv_rounds, "bytes_on_air"].sum())


def runs_table(sweeps, results_root: Path) -> str:
    """The per-seed runs table (CSV text): report.per_seed_table's columns, the ones the rendering reads, each fixed
    graph's spectral gap and each run's bytes on the air to the target (from its links.csv)."""
    import io

    from bridge.controls import graph_adjacency, spectral_gap
    from experiments.campaigns.report import per_seed_with
    from experiments.run.run_outputs import CSV_FLOAT_FORMAT

    runs = pd.read_csv(io.StringIO(per_seed_with(sweeps, results_root, RUN_COLUMNS)))
    gaps = {(n, k): spectral_gap(graph_adjacency("circulant", int(n), int(k)))
            for n, k in runs[["devices", "network.topology_degree"]].dropna().drop_duplicates().itertuples(index=False)}
    runs["spectral_gap"] = [gaps.get((n, k), math.nan)
                            for n, k in zip(runs["devices"], runs["network.topology_degree"])]
    runs["bytes_to_target"] = [bytes_to_target(results_root / run_id, conv) if status in ("done", "diverged")
                               else math.nan for run_id, conv, status in
                               zip(runs["run_id"], runs["conv_rounds"], runs["status"])]
    order = [*[c for c in RUN_COLUMNS if c in runs], *[c for c in runs if c not in RUN_COLUMNS]]
    return runs[order].to_csv(index=False, float_format=CSV_FLOAT_FORMAT)


def evaluation_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"].isin(("done", "diverged")) & ~runs["sweep"].str.endswith(TUNING_SUFFIX)].copy()


def cell_label(sweep: str, key: tuple) -> str:
    if sweep == PAPER:
        return f"shuffled {key[0]:g}, gap {key[1]:.3f}"
    return f"α {key[0]:g}, density {key[1]:g}"


def settings_table(evaluation: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """Per cell and algorithm: each figure's mean and interval over the seeds (to the target: over those that
    reached it, ``statistics.settings_table``) and each currency's censored mean (``<figure>_at_least``: a run
    that never reached the target charged its whole budget)."""
    here = evaluation[evaluation["sweep"] == sweep]
    charged = censored(here)
    here = here.assign(**{f"{figure}_at_least": charged[figure] for figure, *_ in CURRENCIES})
    table = statistics.settings_table(here, [*CELL[sweep], ALGORITHM],
                                      (*FIGURES, *(f"{figure}_at_least" for figure, *_ in CURRENCIES)),
                                      tuple(f for f, *_ in CURRENCIES))
    table = table.assign(_order=table[ALGORITHM].map(lambda name: ORDER.index(name) if name in ORDER else 99))
    ascending = [True, sweep != PAPER]  # the paper's cells from the complete graph down to the ring
    return table.sort_values([*CELL[sweep], "_order"], ascending=[*ascending, True], kind="stable")


def to_target(row: pd.Series, figure: str, digits: int) -> str:
    """'12 ± 2 (5/5)' when every seed reached the target; '≥ 40 (3/5)', the censored mean (never a mean over the
    seeds that reached it alone), when some did; '— (0/5)' when none did."""
    factor = SCALE.get(figure, 1.0)
    if 0 < row["reached"] < row["runs"]:
        return f"≥ {row[f'{figure}_at_least'] * factor:,.{digits}f} ({row['reached']}/{row['runs']})"
    scaled = row.copy()
    scaled[figure], scaled[f"{figure}_half"] = row[figure] * factor, row[f"{figure}_half"] * factor
    return statistics.to_target_cell(scaled, figure, digits)


def settings_markdown(table: pd.DataFrame, sweep: str, target: float) -> str:
    rows = [[cell_label(sweep, tuple(row[c] for c in CELL[sweep])), algorithm_label(row[ALGORITHM]),
             f"{row['algorithm.lr']:g}", shown(row["final_acc"], row["final_acc_half"], 3),
             *[to_target(row, figure, digits) for figure, _, _, digits in CURRENCIES]]
            for _, row in table.iterrows()]
    return markdown_table(["cell", "algorithm", "lr", "final acc",
                           *(f"{unit} to {target:g}" for _, _, unit, _ in CURRENCIES)], rows)


def censored(runs: pd.DataFrame) -> pd.DataFrame:
    """Each currency to the target, a run that never reached it charged its whole budget (``<figure>_censored``
    True where so; final accuracy, which every run has, never)."""
    out = runs.assign(final_acc_censored=False)
    for figure, budget, *_ in CURRENCIES:
        out[f"{figure}_censored"] = out[figure].isna()
        out[figure] = out[figure].fillna(out[budget])
    return out


def informative_pairs(a: pd.DataFrame, b: pd.DataFrame, figure: str) -> pd.Series:
    """The seeds whose censored pair says something: not both censored, and a censored budget no smaller than the
    other side's figure (a method that spent its whole budget short of what the other needed could need more or
    less: the sign is unknown)."""
    a_out, b_out = a[f"{figure}_censored"], b[f"{figure}_censored"]
    return ~(a_out & b_out) & ~(a_out & (a[figure] < b[figure])) & ~(b_out & (b[figure] < a[figure]))


def paired(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Each algorithm minus DeTAG in each cell, seed by seed: final accuracy, and each currency to the target with
    censoring (pairs where neither reached the target left out); Holm's family: every p of the report."""
    runs = censored(evaluation)
    rows = []
    for sweep in [s for s in (PAPER, WIRELESS) if s in set(runs["sweep"])]:
        here = runs[runs["sweep"] == sweep]
        for key, group in here.groupby(CELL[sweep], sort=True):
            reference = group[group[ALGORITHM] == REFERENCE].set_index("seed")
            for name in [n for n in ORDER if n != REFERENCE and n in set(group[ALGORITHM])]:
                other = group[group[ALGORITHM] == name].set_index("seed")
                seeds = reference.index.intersection(other.index)
                row = {"sweep": sweep, "cell": key, "algorithm": name, "pairs": len(seeds)}
                a, b = other.loc[seeds], reference.loc[seeds]
                for figure in PAIRED:
                    informative = informative_pairs(a, b, figure)
                    diff = (a[figure] - b[figure])[informative] * SCALE.get(figure, 1.0)
                    row[f"{figure}_diff"], row[f"{figure}_half"] = mean_interval(diff)
                    row[f"{figure}_pairs"], row[f"{figure}_p"] = len(diff), paired_p(diff)
                    row[f"{figure}_one_censored"] = int(((a[f"{figure}_censored"] ^ b[f"{figure}_censored"])
                                                         & informative).sum())
                rows.append(row)
    return statistics.with_holm(pd.DataFrame(rows, columns=None if rows else ["sweep", "cell", "algorithm"]), PAIRED)


def paired_cell(row: pd.Series, figure: str, digits: int) -> str:
    text = f"{shown(row[f'{figure}_diff'], row[f'{figure}_half'], digits, signed=True)} ({row[f'{figure}_pairs']}"
    censored_pairs = int(row.get(f"{figure}_one_censored", 0))
    return text + (f", {censored_pairs} censored)" if censored_pairs else ")") + holm_note(row, figure)


def paired_markdown(differences: pd.DataFrame, sweep: str) -> str:
    here = differences[differences["sweep"] == sweep]
    rows = [[cell_label(sweep, row["cell"]), f"{algorithm_label(row['algorithm'])} − DeTAG",
             paired_cell(row, "final_acc", 3),
             *[paired_cell(row, figure, digits) for figure, _, _, digits in CURRENCIES]]
            for _, row in here.iterrows()]
    return markdown_table(["cell", "comparison", "Δ final acc", *(f"Δ {unit}" for _, _, unit, _ in CURRENCIES)], rows)


def separated_cells(differences: pd.DataFrame, sweep: str, name: str, figure: str) -> tuple[set, set]:
    """The cells where DeTAG needs separated less than ``name`` in ``figure`` (the other minus DeTAG positive), and
    those where it needs separated more."""
    here = differences[(differences["sweep"] == sweep) & (differences["algorithm"] == name)]
    here = here[here[f"{figure}_pairs"] > 0]
    less = {row["cell"] for _, row in here.iterrows() if separated(row, figure) and row[f"{figure}_diff"] > 0}
    more = {row["cell"] for _, row in here.iterrows() if separated(row, figure) and row[f"{figure}_diff"] < 0}
    return less, more


def tally(differences: pd.DataFrame, sweep: str, name: str, figure: str) -> str:
    """'DeFacto 9 / 2 / 5': the cells where DeTAG needs separated less than ``name``, separated more, and the
    rest (not separated, or neither reached the target)."""
    cells = int(((differences["sweep"] == sweep) & (differences["algorithm"] == name)).sum())
    less, more = separated_cells(differences, sweep, name, figure)
    return f"{algorithm_label(name)} {len(less)} / {len(more)} / {cells - len(less) - len(more)}"


def claim_sentence(differences: pd.DataFrame, sweep: str, cells: int, target: float) -> str:
    """Per currency, the cells where the paper's claim holds (DeTAG separated less than each of D-PSGD, D², DSGT
    and SGP) and those where one of them needs separated less than DeTAG."""
    present = [name for name in CLAIMED if (differences["algorithm"] == name).any()]
    parts = []
    for figure, _, unit, _ in CURRENCIES:
        found = [separated_cells(differences, sweep, name, figure) for name in present]
        holds = set.intersection(*(less for less, _ in found)) if found else set()
        fails = set.union(*(more for _, more in found)) if found else set()
        where = f" ({'; '.join(cell_label(sweep, cell) for cell in sorted(holds))})" if 0 < len(holds) <= 4 else ""
        parts.append(f"in {unit} it holds in {len(holds)}{where} and one of them needs less in {len(fails)}")
    return (f"The claim, cell by cell (DeTAG needs separated less to {target:g} than each of "
            f"{', '.join(algorithm_label(name) for name in present)}), of {cells} cells: " + "; ".join(parts) + ".")


def reached_sentence(table: pd.DataFrame, sweep: str, target: float) -> str:
    parts = []
    for name in [n for n in ORDER if n in set(table[ALGORITHM])]:
        rows = table[table[ALGORITHM] == name]
        parts.append(f"{algorithm_label(name)} {int((rows['reached'] == rows['runs']).sum())}")
    return (f"Cells (of {table.groupby(CELL[sweep]).ngroups}) where every seed reached {target:g}: "
            + ", ".join(parts) + ".")


def fastest_sentence(table: pd.DataFrame, sweep: str, figure: str) -> str:
    """Per cell, the method with the least mean ``figure`` among those where every seed reached the target."""
    wins: dict[str, int] = {}
    for _, cell in table.groupby(CELL[sweep]):
        complete = cell[cell["reached"] == cell["runs"]]
        if len(complete):
            best = complete.sort_values(figure).iloc[0][ALGORITHM]
            wins[best] = wins.get(best, 0) + 1
    return ", ".join(f"{algorithm_label(name)} {wins[name]}" for name in ORDER if name in wins) or "none"


def corner_sentence(table: pd.DataFrame, sweep: str, key: tuple, what: str, target: float) -> str:
    """Every method in one cell: rounds, gradients and seconds to the target (k/n)."""
    cell = table[np.logical_and.reduce([np.isclose(table[c], k) for c, k in zip(CELL[sweep], key)])]
    parts = [f"{algorithm_label(row[ALGORITHM])} {to_target(row, 'conv_rounds', 0)} rounds, "
             f"{to_target(row, 'steps_to_target', 0)} gradients, {to_target(row, 'time_to_target_s', 0)} s"
             for _, row in cell.iterrows()]
    return f"{what} ({cell_label(sweep, key)}), to {target:g}: " + "; ".join(parts) + "."


def readings(table: dict[str, pd.DataFrame], differences: pd.DataFrame, target: float) -> str:
    lines = []
    titles = {PAPER: "The paper's setting (fixed circulant graphs, shuffled data, 37 devices)",
              WIRELESS: "802.11a over ns-3 (20 devices, Dirichlet skew, link density)"}
    for sweep in (PAPER, WIRELESS):
        here = table.get(sweep)
        if here is None or here.empty:
            continue
        cells = here.groupby(CELL[sweep]).ngroups
        lines.append(f"- **{titles[sweep]}.** {reached_sentence(here, sweep, target)} "
                     f"{claim_sentence(differences, sweep, cells, target)}")
        for figure, _, unit, _ in CURRENCIES:
            others = [name for name in ORDER[1:] if name in set(here[ALGORITHM])]
            lines.append(f"  - To {target:g} in {unit}: fewest on average (among the methods every seed of which "
                         f"reached it), cells won: {fastest_sentence(here, sweep, figure)}. Cells where DeTAG needs "
                         f"separated less / separated more / neither: "
                         + "; ".join(tally(differences, sweep, name, figure) for name in others) + ".")
        keys = sorted(set(map(tuple, here[CELL[sweep]].to_numpy())))
        hardest, easiest = min(keys), max(keys)  # least shuffled / lowest alpha first, then sparsest
        lines.append("  - " + corner_sentence(here, sweep, hardest, "Most heterogeneous and sparsest",
                                              target))
        lines.append("  - " + corner_sentence(here, sweep, easiest, "Least heterogeneous and densest",
                                              target))
    return "\n".join(lines)


def render(runs: pd.DataFrame, target: float) -> str:
    evaluation = evaluation_runs(runs)
    tables = {sweep: settings_table(evaluation, sweep) for sweep in (PAPER, WIRELESS)
              if (evaluation["sweep"] == sweep).any()}
    differences = paired(evaluation)
    seeds = sorted(evaluation["seed"].unique())
    parts = [
        f"**Reading** (written by `experiments/campaigns/detag_table.py` from the tables below: means ± 95 % t "
        f"intervals over seeds {', '.join(map(str, seeds))}; gradients: mini-batch gradients per device; MB: bytes "
        f"on the air, all devices; paired differences seed by seed, a run that never reached {target:g} charged "
        f"its whole budget, a pair left out where neither reached it or the budget is less than the other's "
        f"figure; separated: Holm-adjusted p < 0.05 across "
        f"every comparison of the report):", "", readings(tables, differences, target), "",
        *tuning_sections(runs, target)]
    titles = {PAPER: "the paper's setting (spectral gap of the fixed graph's Metropolis matrix; joules: the "
                     "control's airtime ledger)", WIRELESS: "802.11a over ns-3 (joules: ns-3's radio energy model)"}
    for sweep, table in tables.items():
        parts += [f"**Per setting, {titles[sweep]}** (to the target: mean ± 95 % interval when every seed "
                  "reached it; ≥ the censored mean, a run that never reached it charged its whole budget, when some "
                  "did; k/n always shown):", "", settings_markdown(table, sweep, target), "",
                  f"**Paired against DeTAG, {titles[sweep].split(' (')[0]}** (each method minus DeTAG: positive, "
                  "DeTAG needs less; pairs, and those with one side censored):", "",
                  paired_markdown(differences, sweep), ""]
    return "\n".join(parts)


def check_tuned(runs: pd.DataFrame) -> None:
    """Each evaluation sweep at the rates its own tuning chose (sweep ``S`` tuned by ``S-tuning``)."""
    evaluation = runs[~runs["sweep"].str.endswith(TUNING_SUFFIX) & runs["status"].isin(("done", "diverged"))]
    for sweep, group in evaluation.groupby("sweep"):
        tuning = runs[runs["sweep"] == f"{sweep}-tuning{TUNING_SUFFIX}"]
        rates = chosen_rates(tuning_table(tuning, int(tuning["rounds"].iloc[0]))) if len(tuning) else {}
        check_rates(group, rates, sweep)


def main(argv: list[str] | None = None) -> int:
    from experiments.campaigns.report import campaign_main

    return campaign_main(argv, Path(__file__).stem, __doc__.splitlines()[0], "table-detag", runs_table, render,
                         check_tuned)


if __name__ == "__main__":
    sys.exit(main())
