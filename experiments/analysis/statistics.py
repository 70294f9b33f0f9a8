"""Spread over seeds, as a reviewer reads it: means with 95 % confidence intervals, and paired differences.

- ``mean_interval(values)``: the mean and the half-width of its 95 % Student t
  interval, t(0.975, n - 1) * s / sqrt(n) (scipy.stats), NaN with fewer than
  two values: a missing spread is printed "n/a", never "± 0".
- Figures "to the target" (rounds, simulated seconds, joules) exist only for
  the seeds that reached it: their interval is given only when every seed
  did, and the count k/n is always shown.
- ``paired_differences``: runs of two algorithms with the same seed share the
  data split, the initial models, the mini-batches and the link trace (common
  random numbers), so their difference seed by seed is the comparison; its mean
  and t interval are over the seeds both runs have (for a figure to the
  target: the seeds where both reached it), with the paired t-test's p and,
  across all of a table's comparisons, Holm's adjusted p (``holm``): a
  difference is called significant only when its Holm p is below 0.05.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
FIGURES = ("max_acc", "final_acc")  # every run has them
TO_TARGET = ("conv_rounds", "steps_to_target", "time_to_target_s", "energy_to_target_j")  # runs that reached it


def mean_interval(values) -> tuple[float, float]:
    """(mean, half-width of the 95 % t interval); the half-width is NaN for fewer than two values."""
    values = np.asarray([v for v in values if v == v], dtype=float)  # NaN: not measured
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) < 2:
        return float(values[0]), math.nan
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def shown(mean: float, half: float, digits: int, signed: bool = False) -> str:
    """'0.8123 ± 0.0100', or '0.8123 ± n/a' where no spread exists; '—' where nothing was measured;
    ``signed``: a difference, '+0.0200 ± 0.0248'."""
    if mean != mean:
        return "—"
    value = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return f"{value} ± " + ("n/a" if half != half else f"{half:.{digits}f}")


def paired_p(differences) -> float:
    """Two-sided p of the paired t-test that the mean difference is 0 (NaN with fewer than two pairs, or when
    every pair differs by 0). Every pair differing by the same nonzero amount (a method that reaches the target
    in the same round on every seed against one that never does) is the t statistic's limit, infinite: p 0."""
    values = np.asarray([v for v in differences if v == v], dtype=float)
    if len(values) < 2:
        return math.nan
    if values.std(ddof=1) == 0:
        return 0.0 if values[0] != 0 else math.nan
    return float(stats.ttest_1samp(values, 0.0).pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN: not tested, left NaN): sorted ascending,
    p_(i) * (m - i + 1), made non-decreasing, capped at 1 (Holm, Scand. J. Statist. 1979)."""
    p = np.asarray(pvalues, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted = np.full(p.shape, math.nan)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def paired_differences(summary: pd.DataFrame, by: list[str], algorithm: str = "algorithm.name",
                       figures: tuple[str, ...] = ("final_acc", "max_acc", "conv_rounds", "steps_to_target",
                                                   "time_to_target_s", "energy_to_target_j")) -> pd.DataFrame:
    """Each algorithm minus the first one of its group (the reference), seed by seed, for every setting of the
    other axes ``by``: one row per (setting, algorithm) with, per figure, the mean difference, its 95 %
    half-width, the number of pairs and the paired t-test's p; ``<figure>_p_holm`` adjusts every p of the
    table together (Holm), the family being all of the table's comparisons."""
    done = summary[summary["status"].isin(("done", "diverged"))]
    if algorithm not in done or done.empty:
        return pd.DataFrame()
    others = [axis for axis in by if axis != algorithm]
    groups = done.groupby(others, sort=False, dropna=False) if others else [((), done)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        names = list(dict.fromkeys(group[algorithm]))
        if len(names) < 2:
            continue
        reference = group[group[algorithm] == names[0]].set_index("seed")
        for name in names[1:]:
            other = group[group[algorithm] == name].set_index("seed")
            seeds = reference.index.intersection(other.index)
            row = {**dict(zip(others, key)), "algorithm": name, "reference": names[0], "pairs": len(seeds)}
            for figure in figures:
                diff = (other.loc[seeds, figure].astype(float) - reference.loc[seeds, figure].astype(float)).dropna()
                row[f"{figure}_diff"], row[f"{figure}_half"] = mean_interval(diff)
                row[f"{figure}_pairs"] = len(diff)
                row[f"{figure}_p"] = paired_p(diff)
            rows.append(row)
    return with_holm(pd.DataFrame(rows), figures)


def with_holm(table: pd.DataFrame, figures) -> pd.DataFrame:
    """``table`` with ``<figure>_p_holm`` beside each ``<figure>_p``: every p of the table adjusted together (Holm's
    family: all of the table's comparisons and figures)."""
    if len(table):
        columns = [f"{figure}_p" for figure in figures]
        adjusted = holm(table[columns].to_numpy().ravel()).reshape(len(table), len(columns))
        for i, figure in enumerate(figures):
            table[f"{figure}_p_holm"] = adjusted[:, i]
    return table


def settings_table(runs: pd.DataFrame, setting: list[str], figures: tuple[str, ...],
                   to_target: tuple[str, ...], reached_by: str = "time_to_target_s") -> pd.DataFrame:
    """Per setting: the runs, how many reached the target (``reached_by``), and per figure its mean and 95 % t
    half-width; a figure ``to_target`` gets its interval only when every seed reached it (an interval over the
    seeds that did would flatter)."""
    rows = []
    for key, group in runs.groupby(setting, sort=True):
        row = dict(zip(setting, key), runs=len(group), reached=int(group[reached_by].notna().sum()))
        for figure in figures:
            values = group[figure].astype(float)
            row[figure], row[f"{figure}_half"] = mean_interval(values)
            if figure in to_target and values.isna().any():
                row[f"{figure}_half"] = math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def to_target_cell(row: pd.Series, figure: str, digits: int) -> str:
    """'12.0 ± 1.5 (5/5)', '12.0 ± n/a (3/5)' or '— (0/5)'."""
    if row["reached"] == 0:
        return f"— (0/{row['runs']})"
    return f"{shown(row[figure], row[f'{figure}_half'], digits)} ({row['reached']}/{row['runs']})"
