"""``nsdml show RUN_DIR``: what a run is and where it stands, from its files only.

A finished run's figures are shown only while its files match the record in
its ``run.json`` (``experiments.integrity``); a damaged run is named as such,
with the file and what is wrong with it, and exits 1. Files that cannot be
parsed are described, never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from experiments.run_writer import FINISHED, finished_damage

FILES = {
    "config.toml": "the fully resolved config (its hash is the run id)",
    "metrics.csv": "one row per round: accuracy, losses, consensus distance, simulated seconds",
    "links.csv": "one row per round and exchange: who delivered, bytes and frames on the air",
    "devices.csv": "per device: samples, classes, final accuracy",
    "accuracy.png": "accuracy against rounds and simulated seconds",
    "run.json": "status, code fingerprint, file checksums, trace statistics, wall time",
}
FINAL_COLUMNS = ("round", "sim_time_s", "mean_accuracy", "min_accuracy", "max_accuracy", "test_loss")


def _error(message: str) -> None:
    print(f"nsdml: show: {message}", file=sys.stderr)


def _read_record(run_dir: Path) -> tuple[dict | None, str | None]:
    """(run.json's record, None) or (None, what is wrong with it)."""
    path = run_dir / "run.json"
    if not path.is_file():
        return None, "no run.json"
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return None, f"run.json is damaged (not readable JSON: {error})"
    if not isinstance(record, dict):
        return None, "run.json is damaged (not a JSON object)"
    return record, None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _final_metrics(path: Path) -> str | None:
    """The last evaluated round of metrics.csv, or a sentence saying why it cannot be read."""
    try:
        metrics = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return "metrics.csv is empty"
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError, OSError) as error:
        return f"metrics.csv cannot be read as CSV ({type(error).__name__})"
    missing = [column for column in FINAL_COLUMNS if column not in metrics]
    if missing:
        return f"metrics.csv has no column {', '.join(missing)}"
    numeric = metrics[list(FINAL_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    evaluated = numeric.dropna(subset=["mean_accuracy"])
    if not len(evaluated):
        return "metrics.csv has no evaluated round"
    last = evaluated.iloc[-1]
    return (f"final (round {int(last['round'])}, {last['sim_time_s']:.1f} simulated s): mean accuracy "
            f"{last['mean_accuracy']:.4f} (min {last['min_accuracy']:.4f}, max {last['max_accuracy']:.4f}), "
            f"test loss {last['test_loss']:.4f}; best mean accuracy {evaluated['mean_accuracy'].max():.4f}")


def show_run(run_dir: Path) -> int:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        _error(f"{run_dir} is not a run directory (no such directory)")
        return 2
    has_config = (run_dir / "config.toml").is_file()
    record, problem = _read_record(run_dir)
    if record is None:
        _error(f"{run_dir} is not a readable run: {problem}" + ("" if has_config else " and no config.toml"))
        return 2 if not has_config and problem == "no run.json" else 1
    status = record.get("status")
    print(f"run {run_dir.name}: {status} after {record.get('rounds_completed')} rounds"
          + (f" ({record['error']})" if record.get("error") else ""))
    wall = _number(record.get("wall_seconds"))
    if "wall_seconds" in record:
        shown = f"{wall:.1f} s" if wall is not None and math.isfinite(wall) else f"unreadable ({record['wall_seconds']!r})"
        print(f"wall time {shown}; code fingerprint {record.get('code_fingerprint')}; "
              f"trace {'reused' if record.get('trace_reused') else 'simulated'}")
    broken = finished_damage(run_dir) if status in FINISHED else None
    if broken:
        _error(f"run {run_dir.name} is damaged: {broken}; its figures are not shown "
               f"(`nsdml run` with its config recomputes it)")
    elif (run_dir / "metrics.csv").is_file():
        final = _final_metrics(run_dir / "metrics.csv")
        if final.startswith("final"):
            print(final)
        else:
            _error(final)
    print("\nconfig:")
    if has_config:
        raw = (run_dir / "config.toml").read_bytes()
        text = raw.decode("utf-8", errors="replace")
        if "\ufffd" in text:
            print("    (config.toml is not UTF-8 text; undecodable bytes shown as \ufffd)")
        print("    " + text.strip().replace("\n", "\n    "))
    else:
        print("    (no config.toml)")
    print("\nfiles:")
    for name, meaning in FILES.items():
        path = run_dir / name
        if path.exists():
            print(f"    {path}  {meaning}")
    if isinstance(record.get("trace_meta"), dict) and record["trace_meta"]:
        print("\ntrace:", json.dumps(record["trace_meta"], sort_keys=True, default=str))
    return 1 if broken else 0
