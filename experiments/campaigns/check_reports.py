"""``make check-reports``: each report's cheapest cell, re-made at HEAD from nothing, equals its row in the report's
per-seed CSV, so a code change that moves a report's numbers is caught the day it lands.

    python -m experiments.campaigns.check_reports [NAME ...] [--work DIR]

For each report of ``CHECKED`` (the ones re-made on the current code; the others are listed as not checked),
the rows of ``experiments/reports/<name>-runs.csv`` are matched by run id to the report's sweep files as they
expand at HEAD (a row whose config no longer expands to its id is itself a finding: the report must be
re-made). Of the finished rows, the cheapest (fewest devices x rounds, a control link model before ns-3) is
run into an empty results root with an empty trace cache, and its figures must equal the CSV's (as the CSV
writes them, 8 significant digits). A mismatch names the report, the run and the figure, and the command
exits 1; the report must then be re-made, or the change explained.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bridge.controls import CONTROL_MODELS
from experiments.campaigns.report import REPORTS
from experiments.run.run_outputs import CSV_FLOAT_FORMAT

# Report -> the sweep files whose runs its per-seed CSV holds (in the repository); the reports re-made on the
# current code. A report leaves this list when a change makes it stale and joins it again once re-made.
CHECKED = {
    "async": ("experiments/configs/async_table.toml", "experiments/configs/async_table_sync.toml",
              "experiments/configs/async_table_barrier.toml"),
    "robust": ("experiments/configs/robust_table.toml", "experiments/configs/robust_table_jammer.toml"),
    "energy": ("experiments/configs/energy_table.toml",),
    "esgd": ("experiments/configs/esgd_table.toml", "experiments/configs/esgd_table_baselines.toml",
             "experiments/configs/esgd_table_threshold.toml"),
    "detag": ("experiments/configs/detag_paper.toml", "experiments/configs/detag_wireless.toml"),
}
FIGURES = ("final_acc", "max_acc", "conv_rounds", "steps_to_target", "time_to_target_s", "energy_to_target_j")


def cheapest(rows: pd.DataFrame) -> pd.Series:
    """The finished row that costs least to re-make: fewest devices x rounds, a control before ns-3."""
    done = rows[rows["status"].isin(("done", "diverged"))]
    cost = done["devices"] * done.get("rounds", 1) * done["network.link_model"].map(
        lambda model: 1 if model in CONTROL_MODELS else 100)
    return done.loc[cost.sort_values(kind="stable").index[0]]


def shown(value) -> str:
    """A figure as the per-seed CSV writes it (NaN: empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return CSV_FLOAT_FORMAT % float(value)


def check(name: str, root: Path, work: Path) -> list[str]:
    """The findings for one report (empty: its cheapest cell re-made equals its CSV row)."""
    from experiments.run.runner import run_experiment
    from experiments.run.sweep import load_sweep, summarize_run

    recorded = pd.read_csv(REPORTS / f"{name}-runs.csv")
    configs = {}
    for path in CHECKED[name]:
        sweep = load_sweep(root / path)
        configs.update({config.run_id: (config, sweep.target_accuracy) for _, config in sweep.runs})
    listed = recorded[~recorded["sweep"].astype(str).str.endswith("-tune")]
    unknown = sorted(set(listed["run_id"]) - set(configs))
    if unknown:
        return [f"{name}: {len(unknown)} run(s) of {name}-runs.csv no longer expand from its sweep files at HEAD "
                f"(e.g. {unknown[0]}): a config's meaning changed; re-make the report"]
    row = cheapest(listed)
    config, target = configs[row["run_id"]]
    results, cache = work / name / "results", work / name / "cache"
    run_experiment(config, results, cache, log=lambda message: None)
    made = summarize_run(results / config.run_id, target, config.scenario.nodes)
    findings = []
    for figure in FIGURES:
        if figure in recorded and shown(made.get(figure)) != shown(row[figure]):
            findings.append(f"{name}: run {row['run_id']} ({row['algorithm.name']}, {row['network.link_model']}, "
                            f"seed {row['seed']}): {figure} is {shown(made.get(figure)) or 'empty'} at HEAD, "
                            f"{shown(row[figure]) or 'empty'} in {name}-runs.csv")
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.campaigns.check_reports",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="reports to check (default: every checked report)")
    parser.add_argument("--work", type=Path, default=None, help="where to re-make the cells (default: a temp dir)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = args.names or sorted(CHECKED)
    unknown = [name for name in names if name not in CHECKED]
    if unknown:
        print(f"check-reports: {', '.join(unknown)}: not a checked report (checked: {', '.join(sorted(CHECKED))})",
              file=sys.stderr)
        return 2
    findings = []
    with tempfile.TemporaryDirectory(prefix="nsdml-check-") as scratch:
        work = args.work or Path(scratch)
        for name in names:
            found = check(name, args.root, work)
            print(f"check-reports: {name}: " + ("the cheapest cell re-made equals its row" if not found else
                                                 f"{len(found)} difference(s)"), file=sys.stderr)
            findings += found
    others = sorted(path.stem.removesuffix("-runs") for path in REPORTS.glob("*-runs.csv")
                    if path.stem.removesuffix("-runs") not in CHECKED)
    if others:
        print(f"check-reports: not checked (made on older code, to be re-made): {', '.join(others)}",
              file=sys.stderr)
    for finding in findings:
        print(finding, file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
