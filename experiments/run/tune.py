"""``nsdml tune CONFIG --algorithms A,B --seeds S,T``: the project's tuning protocol on any config.

Each algorithm's learning rate is chosen on the tuning seeds (never the seeds a table reports) at the
config's own horizon (``rounds``) and target (``--target`` or the sweep's ``target_accuracy``), by the rule
in ``experiments.analysis.tuning``: fewest rounds to the target averaged over the config's settings (never
reached: rounds + 1), ties to the higher final accuracy. The grid starts at five rates around each
algorithm's default and widens one rate at a time past whichever edge holds the choice, until the choice is
interior or a bound stops it. The runs are ordinary runs (a second call reuses them).

Writes, under ``<results>/tune/<name>/``: ``tuning.csv`` and ``tuning.md`` (the table, each rate's mean rounds
and k/n settings reached, the choice and where it stands), ``tuning.toml`` (every tuning run, as a sweep file), ``overrides.toml`` (the chosen rates as
``[algorithm_overrides.<name>]`` tables to paste into a sweep) and ``tuned.toml`` (the config as a sweep of the
tuned algorithms at their chosen rates, over the config's own seeds: ready for ``nsdml sweep``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import tomli_w

from experiments.analysis.tuning import (LR_BOUNDS, chosen_rates, starting_grid, tuning_markdown, tuning_table,
                                         widening)
from experiments.config import ConfigError
from experiments.run.atomic import write_atomically
from experiments.run.sweep import Sweep, expand_sweep, run_sweep

MAX_WIDENINGS = 12  # rates added past an edge per algorithm; LR_BOUNDS stops it well before, from any default


@dataclass
class Tuned:
    table: pd.DataFrame  # tuning_table: one row per algorithm and rate tried
    rates: dict[str, float]  # the chosen rate per algorithm
    standing: dict[str, str]  # "interior" or the bound that stopped the widening, per algorithm
    out_dir: Path


def _default_lr(name: str) -> float:
    from learner.algorithms.registry import build_algorithm

    try:
        algorithm = build_algorithm(name)
    except (KeyError, ValueError, TypeError) as error:
        raise ConfigError(f"--algorithms: {name!r}: {error}") from error
    if not hasattr(algorithm, "lr"):
        raise ConfigError(f"--algorithms: {name!r} has no learning rate (algorithm.lr) to tune")
    return float(algorithm.lr)


def _seeds_of(raw: dict[str, Any]) -> list:
    seed = raw.get("seed", 0)
    return seed if isinstance(seed, list) else [seed]


def tuning_base(raw: dict[str, Any], seeds: list[int]) -> tuple[dict[str, Any], str, float | None]:
    """The config without what the tuning sets (seeds, algorithm and lr, overrides, the sweep table); its name
    and target. (``tune`` puts back the overrides' other hyperparameters of the algorithms it tunes.)"""
    base = copy.deepcopy(raw)
    settings = base.pop("sweep", {}) or {}
    if not isinstance(settings, dict):
        raise ConfigError("sweep: expected a table [sweep]")
    if "cases" in settings:
        raise ConfigError("sweep.cases: tune takes a config or a sweep without cases (cases may set the algorithm "
                          "the tuning sets)")
    if isinstance(base.get("rounds"), list):
        raise ConfigError("rounds: tune at one horizon, the one the evaluation uses (a single number)")
    overlap = sorted(set(seeds) & set(_seeds_of(base)))
    if overlap:
        raise ConfigError(f"--seeds: {', '.join(map(str, overlap))} also among the config's seeds; tune on seeds "
                          f"the evaluation does not report")
    base.pop("seed", None)
    base.pop("algorithm_overrides", None)
    algorithm = base.get("algorithm", {})
    if isinstance(algorithm, dict):
        algorithm.pop("name", None)
        algorithm.pop("lr", None)
    name = str(settings.get("name", raw.get("name", "run")))
    return base, name, settings.get("target_accuracy")


def tuning_file(base: dict[str, Any], grid: dict[str, list[float]], seeds: list[int], name: str,
                target: float) -> dict[str, Any]:
    """The tuning runs as a sweep file: every algorithm at every rate of its grid (cases), on the tuning seeds."""
    cases = [{"algorithm": {"name": algorithm, "lr": rate}} for algorithm, rates in grid.items() for rate in rates]
    return {**copy.deepcopy(base), "seed": list(seeds),
            "sweep": {"name": f"{name}-tune", "target_accuracy": target, "cases": cases}}


def tuning_sweep(base: dict[str, Any], grid: dict[str, list[float]], seeds: list[int], name: str,
                 target: float) -> Sweep:
    return expand_sweep(tuning_file(base, grid, seeds, name, target))


def tune(raw: dict[str, Any], algorithms: list[str], seeds: list[int], target: float | None, results_root: Path,
         cache_dir: Path, workers: int = 1, ray_address: str | None = None, quiet: bool = False,
         log: Callable[[str], None] = print) -> Tuned:
    """Run the tuning protocol; write its table, overrides and tuned sweep; return what it chose."""
    if not algorithms:
        raise ConfigError("--algorithms: name at least one algorithm, e.g. --algorithms dpsgd,hyperprism")
    if not seeds:
        raise ConfigError("--seeds: name at least one tuning seed, e.g. --seeds 900,901")
    base, name, file_target = tuning_base(raw, seeds)
    fixed = {algorithm: {key: value for key, value in table.items() if key != "lr"}
             for algorithm, table in (raw.get("algorithm_overrides") or {}).items()
             if algorithm in algorithms and isinstance(table, dict)}
    if any(fixed.values()):  # an algorithm's other hyperparameters stay as the config sets them
        base["algorithm_overrides"] = {algorithm: table for algorithm, table in fixed.items() if table}
    target = target if target is not None else file_target
    if target is None:
        raise ConfigError("--target: the accuracy the evaluation counts rounds to (or the sweep's "
                          "target_accuracy); chosen before the runs")
    centres = {algorithm: _default_lr(algorithm) for algorithm in dict.fromkeys(algorithms)}
    grid = {algorithm: starting_grid(centre) for algorithm, centre in centres.items()}
    sweep = tuning_sweep(base, grid, seeds, name, target)  # checks every run before anything runs
    rounds = sweep.runs[0][1].rounds
    for _ in range(MAX_WIDENINGS + 1):
        summary = run_sweep(sweep, results_root, cache_dir, workers=workers, ray_address=ray_address, quiet=quiet)
        table = tuning_table(summary, rounds)
        missing = sorted(set(grid) - set(table["algorithm.name"]))
        if missing:
            raise ConfigError(f"--algorithms: no run of {', '.join(missing)} finished; see results/failed/")
        following, standing = widening(table, centres, LR_BOUNDS)
        if not following:
            break
        for algorithm, rate in following.items():
            log(f"[tune {name}] {algorithm}: the choice sits on the grid's edge; trying lr {rate:g}")
            grid[algorithm].append(rate)
        sweep = tuning_sweep(base, grid, seeds, name, target)
    out_dir = Path(results_root) / "tune" / name
    tuned = Tuned(table, chosen_rates(table), standing, out_dir)
    _write(tuned, raw, base, name, target, seeds, rounds)
    write_atomically(out_dir / "tuning.toml", f"# nsdml tune: every run of the tuning (its final grid), as a sweep a "
                     f"report can stamp and list\n" + tomli_w.dumps(tuning_file(base, grid, seeds, name, target)))
    return tuned


def _write(tuned: Tuned, raw: dict[str, Any], base: dict[str, Any], name: str, target: float, seeds: list[int],
           rounds: int) -> None:
    from experiments.run.run_outputs import CSV_FLOAT_FORMAT

    tuned.out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(tuned.out_dir / "tuning.csv", tuned.table.to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
    standing = "; ".join(f"{algorithm} lr {tuned.rates[algorithm]:g}: {where}"
                         for algorithm, where in tuned.standing.items())
    write_atomically(tuned.out_dir / "tuning.md", (
        f"**Tuning of {name}**: seeds {', '.join(map(str, seeds))} (not reported), {rounds} rounds, target "
        f"{target:g}. Cells: mean rounds to the target over the settings and seeds (never reached: {rounds + 1}), "
        f"(k/n) runs that reached it; bold: the choice (fewest rounds, ties to the higher final accuracy).\n\n"
        f"{tuning_markdown(tuned.table)}\n\nChosen: {standing}.\n"))
    overrides = {"algorithm_overrides": {algorithm: {"lr": rate} for algorithm, rate in tuned.rates.items()}}
    write_atomically(tuned.out_dir / "overrides.toml",
                     f"# nsdml tune: chosen on seeds {seeds} at {rounds} rounds, target {target:g}\n"
                     + tomli_w.dumps(overrides))
    evaluation = {**copy.deepcopy(base), "seed": copy.deepcopy(raw.get("seed", 0))}
    evaluation.setdefault("algorithm", {})["name"] = list(tuned.rates)
    evaluation["sweep"] = {"name": f"{name}-tuned", "target_accuracy": target}
    evaluation.update(overrides)
    write_atomically(tuned.out_dir / "tuned.toml",
                     f"# nsdml tune: the tuned algorithms at their chosen rates (tuning seeds {seeds})\n"
                     + tomli_w.dumps(evaluation))
