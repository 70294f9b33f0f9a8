"""``nsdml show RUN_DIR...``: what a run is and where it stands, from its files only; several runs (or a
sweep directory) one line each.

A finished run's figures are shown only while its files match the record in
its ``run.json`` (``experiments.run.integrity``); a damaged run is named as such,
with the file and what is wrong with it, and exits 1. Files that cannot be
parsed are described, never a traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from experiments.run.run_writer import FINISHED, finished_damage, recorded_number

FILES = {
    "config.toml": "the fully resolved config (its hash, name and checkpoints left out, is the run id)",
    "metrics.csv": "one row per round: accuracy, losses, consensus distance, simulated seconds, energy",
    "links.csv": "one row per round and exchange: who delivered, bytes and frames on the air",
    "device_metrics.csv": "one row per device and evaluation: its accuracy and test loss",
    "devices.csv": "per device: samples, classes, final accuracy",
    "accuracy.png": "accuracy against rounds and simulated seconds",
    "devices.png": "every device's accuracy over the rounds, and at the end",
    "positions.csv": "where the nodes are (by round while they move)",
    "topology.png": "positions and each pair's delivery rate over the run",
    "run.json": "status, code fingerprint, file checksums, trace statistics, wall time",
    "run.log": "every line the run logged, timestamped (-v: one per round); a record, not a result",
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
    wall = recorded_number(record.get("wall_seconds"))
    if "wall_seconds" in record:
        shown = f"{wall:.1f} s" if wall is not None and math.isfinite(wall) else f"unreadable ({record['wall_seconds']!r})"
        meta = record.get("trace_meta") if isinstance(record.get("trace_meta"), dict) else {}
        print(f"wall time {shown}; code fingerprint {record.get('code_fingerprint')}; "
              f"trace {'reused' if record.get('trace_reused') else 'simulated'} "
              f"(simulator {meta.get('simulator', 'not recorded')})")
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
    if has_config:
        raw = (run_dir / "config.toml").read_bytes()
        text = raw.decode("utf-8", errors="replace")
        changed = None if "\ufffd" in text else _changed_fields(text)
        if changed is not None:
            print(f"\nconfig (fields that differ from the defaults; all in {run_dir / 'config.toml'}):")
            print("    " + ("\n    ".join(changed) if changed else "(none)"))
        else:
            print("\nconfig:")
            if "\ufffd" in text:
                print("    (config.toml is not UTF-8 text; undecodable bytes shown as \ufffd)")
            print("    " + text.strip().replace("\n", "\n    "))
    else:
        print("\nconfig:\n    (no config.toml)")
    print("\nfiles:")
    for name, meaning in FILES.items():
        path = run_dir / name
        if path.exists():
            print(f"    {path}  {meaning}")
    if not broken:
        network = network_line(run_dir, record)
        if network:
            print("\n" + network)
    return 1 if broken else 0


def _changed_fields(text: str) -> list[str] | None:
    """``field = value`` for every field of a resolved config.toml that is not its default (None: unreadable)."""
    import tomllib

    from experiments.config import RunConfig
    from learner.algorithms.registry import build_algorithm

    try:
        config = tomllib.loads(text)
        defaults = RunConfig().to_dict()
        algorithm = config.get("algorithm", {})
        built = build_algorithm(algorithm.get("name", "dpsgd"))
        defaults["algorithm"] = {"name": "dpsgd", **{k: getattr(built, k) for k in algorithm if hasattr(built, k)}}
    except Exception:  # a damaged file or a plugin that no longer loads: show the whole file instead
        return None
    changed = []
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            changed += [f"{key}.{k} = {v!r}" for k, v in value.items() if defaults[key].get(k) != v]
        elif defaults.get(key) != value:
            changed.append(f"{key} = {value!r}")
    return changed


def _short_final(path: Path) -> str:
    """'final accuracy 0.8298 (best 0.8467)' or why metrics.csv cannot say."""
    final = _final_metrics(path)
    if not final.startswith("final"):
        return final
    accuracy = pd.to_numeric(pd.read_csv(path)["mean_accuracy"], errors="coerce").dropna()  # as _final_metrics
    return f"final accuracy {accuracy.iloc[-1]:.4f} (best {accuracy.max():.4f})"


def network_line(run_dir: Path, record: dict) -> str:
    """Delivery and energy of a run in one line, from links.csv, metrics.csv and run.json ('' if unreadable)."""
    meta = record.get("trace_meta") if isinstance(record.get("trace_meta"), dict) else {}
    parts = [f"network {meta.get('link_model', '?')}"]
    if isinstance(meta.get("idle_density"), (int, float)):
        parts.append(f"idle density {meta['idle_density']:.3f}")
    try:
        links = pd.read_csv(run_dir / "links.csv").apply(pd.to_numeric, errors="coerce")
        metrics = pd.read_csv(run_dir / "metrics.csv").apply(pd.to_numeric, errors="coerce")
        if len(links) and links["intended_pairs"].sum() > 0:
            parts.append(f"{links['delivered_pairs'].sum() / links['intended_pairs'].sum():.1%} of intended "
                         f"messages delivered over {len(links)} exchanges, mean completion "
                         f"{links['mean_completion_s'].mean():.2f} s")
        last = metrics.iloc[-1]
        parts.append(f"energy {last['cumulative_energy_j']:.1f} J over {last['sim_time_s']:.1f} simulated s")
    except (OSError, ValueError, TypeError, KeyError, IndexError, pd.errors.ParserError):  # unfinished or damaged
        return ""
    return "; ".join(parts)


def show_runs(paths: list[Path]) -> int:
    """One run in full, or several runs (a sweep directory's among them) one line each."""
    from experiments.analysis.compare import CompareError, run_dirs_of

    if len(paths) == 1 and not (Path(paths[0]) / "summary.csv").is_file():
        return show_run(paths[0])
    try:
        run_dirs = run_dirs_of(paths)
    except CompareError as error:
        _error(str(error))
        return 2
    damaged = False
    for run_dir in run_dirs:
        record, problem = _read_record(run_dir)
        status = record.get("status") if record else None
        broken = problem or (finished_damage(run_dir) if status in FINISHED else None)
        damaged |= bool(broken)
        if broken:
            print(f"{run_dir.name}: damaged: {broken}")
            continue
        line = f"{run_dir.name}: {status} after {record.get('rounds_completed')} rounds"
        if (run_dir / "metrics.csv").is_file():
            line += f"; {_short_final(run_dir / 'metrics.csv')}"
        network = network_line(run_dir, record)
        print(line + (f"; {network}" if network else ""))
    return 1 if damaged else 0
