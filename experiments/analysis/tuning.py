"""Learning rates tuned on seeds the tables do not report, by a rule fixed before the runs, and enforced.

The rule: per algorithm, the lr with the fewest rounds (evaluation periods, for the asynchronous schedule) to
the target averaged over the tuning sweep's settings, a setting that never reached it counted as rounds + 1;
ties go to the higher mean final accuracy. ``check_rates`` refuses an evaluation sweep that runs an algorithm
at another rate (the error names the field), so a table cannot silently drift from its tuning.

The grid (``starting_grid``, ``widening``): five rates a factor sqrt(10) apart, from the algorithm's default
/ 10 to its default x 10; while the chosen rate sits on an edge of the rates tried, one more rate beyond that
edge is tried, until the choice is interior or the next rate would leave ``LR_BOUNDS`` (then the report says
which bound stopped it).
"""

from __future__ import annotations

import math

import pandas as pd

ALGORITHM = "algorithm.name"
ALGORITHM_NAMES = {"dpsgd": "D-PSGD", "hyperprism": "HyperPrism", "dsgt": "DSGT", "detag": "DeTAG",
                   "choco_sgd": "CHOCO-SGD", "adpsgd": "AD-PSGD", "adpsgd_broadcast": "AD-PSGD (broadcast)",
                   "swarm_sgd": "SwarmSGD", "swarm_sgd_broadcast": "SwarmSGD (broadcast)",
                   "gossip_learning": "gossip learning",
                   "gossip_learning_broadcast": "gossip learning (broadcast)", "async_dpsgd": "async D-PSGD",
                   "dpsgd_one_way": "D-PSGD, one-way links", "dpsgd_cached": "D-PSGD, last-heard cache",
                   "trimmed_mean": "trimmed mean", "clipped_gossip": "ClippedGossip", "bridge": "BRIDGE-T",
                   "krum": "Krum", "dense_sgd": "dense SGD", "fedavg": "FedAvg", "esgd": "eSGD", "dgc": "DGC",
                   "threshold_sgd": "threshold SGD", "d2": "D²",
                   "sgp": "SGP", "defacto": "DeFacto"}


class TuningError(ValueError):
    """A campaign that cannot be tabled as configured (the message names the field)."""


def algorithm_label(name: str) -> str:
    return ALGORITHM_NAMES.get(name, name)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(cells) + " |" for cells in rows)])


def tuning_table(tuning: pd.DataFrame, rounds: int) -> pd.DataFrame:
    """Per algorithm and lr: the rounds to the target averaged over the settings (never reached: rounds + 1), the
    settings that reached it, the mean final accuracy; ``chosen`` marks each algorithm's rate by the rule above."""
    done = tuning[tuning["status"].isin(("done", "diverged"))]
    table = done.assign(censored_rounds=done["conv_rounds"].fillna(rounds + 1)).groupby(
        [ALGORITHM, "algorithm.lr"], sort=True).agg(
        mean_rounds=("censored_rounds", "mean"), reached=("conv_rounds", "count"), settings=("run_id", "count"),
        final_acc=("final_acc", "mean")).reset_index()
    ranked = table.sort_values([ALGORITHM, "mean_rounds", "final_acc"], ascending=[True, True, False])
    chosen = ranked.groupby(ALGORITHM).head(1).index
    table["chosen"] = table.index.isin(chosen)
    return table


def chosen_rates(tuning: pd.DataFrame) -> dict[str, float]:
    return dict(zip(tuning.loc[tuning["chosen"], ALGORITHM], tuning.loc[tuning["chosen"], "algorithm.lr"]))


def check_rates(evaluation: pd.DataFrame, rates: dict[str, float], sweep_name: str) -> None:
    """The evaluation sweep must run every algorithm at its tuned rate."""
    for name, used in evaluation.groupby(ALGORITHM)["algorithm.lr"].unique().items():
        if name not in rates:
            raise TuningError(f"algorithm.name: {name!r} in sweep {sweep_name!r} was not tuned (not in the tuning "
                              f"sweep)")
        if len(used) != 1 or not math.isclose(float(used[0]), rates[name]):
            raise TuningError(f"algorithm_overrides.{name}.lr: sweep {sweep_name!r} uses "
                              f"{', '.join(f'{v:g}' for v in used)}; the tuning chose {rates[name]:g}")


def tuning_markdown(tuning: pd.DataFrame) -> str:
    grid = sorted(tuning["algorithm.lr"].unique())
    rows = []
    for name, group in tuning.groupby(ALGORITHM, sort=False):
        by_lr = group.set_index("algorithm.lr")
        cells = []
        for lr in grid:
            if lr not in by_lr.index:
                cells.append("—")
                continue
            entry = by_lr.loc[lr]
            text = f"{entry['mean_rounds']:.1f} ({entry['reached']}/{entry['settings']})"
            cells.append(f"**{text}**" if entry["chosen"] else text)
        chosen = float(by_lr.index[by_lr["chosen"]][0])
        edge = " (grid edge)" if chosen in (grid[0], grid[-1]) else ""
        rows.append([algorithm_label(name), *cells, f"{chosen:g}{edge}"])
    return markdown_table(["algorithm", *[f"lr {lr:g}" for lr in grid], "chosen"], rows)


LR_STEP = 10 ** 0.5  # neighbouring rates of a grid: two per decade
LR_BOUNDS = (1e-4, 100.0)  # the widest a widened grid goes (100 is the largest lr any algorithm accepts)


def grid_rate(value: float) -> float:
    """A rate as a grid holds it: three significant digits (0.0316, not 0.031622776...)."""
    return float(f"{value:.3g}")


def starting_grid(default_lr: float, bounds: tuple[float, float] = LR_BOUNDS) -> list[float]:
    """Five rates a factor sqrt(10) apart centred on the algorithm's default, inside ``bounds``."""
    rates = (grid_rate(default_lr * LR_STEP ** k) for k in (-2, -1, 0, 1, 2))
    return sorted({rate for rate in rates if bounds[0] <= rate <= bounds[1]})


def widening(table: pd.DataFrame, centres: dict[str, float], bounds: tuple[float, float] = LR_BOUNDS
             ) -> tuple[dict[str, float], dict[str, str]]:
    """From a ``tuning_table``: the next rate to try per algorithm whose choice sits on an edge of its rates
    (one sqrt(10) step past it, on the grid through the algorithm's ``centres`` rate), and, per algorithm,
    where its choice stands ("interior", or the bound that stopped the widening)."""
    following, standing = {}, {}
    for name, group in table.groupby(ALGORITHM, sort=True):
        rates = sorted(group["algorithm.lr"])
        chosen_row = group.loc[group["chosen"]].iloc[0]
        chosen = float(chosen_row["algorithm.lr"])
        note = "" if chosen_row["reached"] else " (no rate reached the target: chosen by final accuracy)"
        if len(rates) >= 3 and rates[0] < chosen < rates[-1]:
            standing[name] = "interior" + note
            continue
        low_edge = chosen == rates[0]
        step = round(math.log(chosen / centres[name], LR_STEP)) + (-1 if low_edge else 1)
        beyond = grid_rate(centres[name] * LR_STEP ** step)
        if bounds[0] <= beyond <= bounds[1]:
            following[name] = beyond
            standing[name] = "widening"
        else:
            standing[name] = f"at the {'lower' if low_edge else 'upper'} bound {bounds[0 if low_edge else 1]:g}" + note
    return following, standing
