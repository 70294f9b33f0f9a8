"""``nsdml show RUN_DIR``: what a run is and where it stands, from its files only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from experiments.run_writer import run_record

FILES = {
    "config.toml": "the fully resolved config (its hash is the run id)",
    "metrics.csv": "one row per round: accuracy, losses, consensus distance, simulated seconds",
    "links.csv": "one row per round and exchange: who delivered, bytes and frames on the air",
    "devices.csv": "per device: samples, classes, final accuracy",
    "accuracy.png": "accuracy against rounds and simulated seconds",
    "run.json": "status, code fingerprint, trace statistics, wall time",
}


def show_run(run_dir: Path) -> int:
    run_dir = Path(run_dir)
    record = run_record(run_dir)
    if not (run_dir / "config.toml").is_file() or not record:
        print(f"nsdml: show: {run_dir} is not a run directory (no config.toml and run.json)", file=sys.stderr)
        return 2
    print(f"run {run_dir.name}: {record.get('status')} after {record.get('rounds_completed')} rounds"
          + (f" ({record['error']})" if record.get("error") else ""))
    if "wall_seconds" in record:
        print(f"wall time {record['wall_seconds']:.1f} s; code fingerprint {record.get('code_fingerprint')}; "
              f"trace {'reused' if record.get('trace_reused') else 'simulated'}")
    metrics_path = run_dir / "metrics.csv"
    if metrics_path.is_file():
        metrics = pd.read_csv(metrics_path)
        evaluated = metrics.dropna(subset=["mean_accuracy"])
        if len(evaluated):
            last = evaluated.iloc[-1]
            print(f"final (round {int(last['round'])}, {last['sim_time_s']:.1f} simulated s): mean accuracy "
                  f"{last['mean_accuracy']:.4f} (min {last['min_accuracy']:.4f}, max {last['max_accuracy']:.4f}), "
                  f"test loss {last['test_loss']:.4f}; best mean accuracy {evaluated['mean_accuracy'].max():.4f}")
    print("\nconfig:")
    print("    " + (run_dir / "config.toml").read_text().strip().replace("\n", "\n    "))
    print("\nfiles:")
    for name, meaning in FILES.items():
        path = run_dir / name
        if path.exists():
            print(f"    {path}  {meaning}")
    details = {k: v for k, v in record.items() if k in ("trace_meta",)}
    if details.get("trace_meta"):
        print("\ntrace:", json.dumps(details["trace_meta"], sort_keys=True))
    return 0
