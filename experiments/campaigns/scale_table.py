"""The large-network table: what 802.11a costs from 20 to 1,000 devices, what pruning and chunking change, and
D-PSGD against HyperPrism at 200, 500 and 1,000 devices.

Built from finished sweeps' files only (``make table-scale`` runs them first)::

    python -m experiments.campaigns.scale_table [--results results] [--cache .cache/traces]
    python -m experiments.campaigns.scale_table --speedup   # measure the chunked speed-up once (results/scale/speedup.json)

Sections (experiments/reports/scale.md holds them):

- **Cost** (``scale_cost.toml``): per device count and channel, ns-3's seconds per round, events per frame and
  peak memory (the worker's own record), the learner's seconds per round (local steps and aggregation), per
  evaluation (every device's model on the test set) and peak memory (a D-PSGD run's run.json); the exponent b of a least-squares fit seconds ∝ N^b over 100-1,000 devices (below 100 the fixed
  costs dominate); the small CNN at 1,000 devices (``scale_cnn.toml``).
- **Pruning** (``scale_pruning.toml``): 100 devices, everyone within the cut-off and a sparse placement; the pruned
  spectrum channel against the unpruned one on the same seed: arrays identical or not, per-pair delivery rates,
  completion times (Kolmogorov-Smirnov), events per frame; YansWifiChannel beside them.
- **Chunks in parallel**: one trace (500 devices, 4 rounds) made serially, in 2 chunks on 1 worker and on 2;
  wall seconds, measured once by ``--speedup`` on an otherwise idle machine and kept in results/scale/.
- **The 1,000-device trace** (``scale_trace.toml``): 100 rounds in 4 chunks of 25, two at a time, and a D-PSGD run
  over it.
- **D-PSGD against HyperPrism** (``scale_table.toml``, rates from ``scale_tuning.toml`` by experiments.analysis.tuning's
  rule): final accuracy, rounds, seconds and joules to the target (95 % t intervals, k/n), paired differences.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bridge import obtain_trace
from experiments.run.atomic import write_atomically
from experiments.run.machine import machine_record
from experiments.analysis.statistics import paired_differences, settings_table, shown, to_target_cell
from experiments.run.sweep import load_sweep, write_summary
from experiments.analysis.tuning import TuningError, check_rates, chosen_rates, markdown_table, tuning_markdown, tuning_table

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SWEEPS = {name: CONFIGS / f"scale_{name}.toml" for name in ("tuning", "table", "cost", "cnn", "pruning", "trace")}
FIT_FROM = 100  # devices: the fitted exponent uses 100 to 1,000 (below, fixed costs dominate)
SPEEDUP = dict(devices=500, rounds=4, chunk_rounds=2)
SPEEDUP_FILE = Path("scale") / "speedup.json"
TO_TARGET = (("conv_rounds", 1), ("time_to_target_s", 1), ("energy_to_target_j", 0))


def finished_runs(sweep_path: Path, results_root: Path) -> list[tuple[object, dict]]:
    """(config, run.json) of every finished run of a sweep, in the sweep's order."""
    runs = []
    for _, config in load_sweep(sweep_path).runs:
        record = results_root / config.run_id / "run.json"
        if record.exists():
            info = json.loads(record.read_text())
            if info.get("status") in ("done", "diverged"):
                runs.append((config, info))
    return runs


def cost_row(config, info: dict) -> dict:
    """ns-3's and the learner's cost of one run over its trace (the trace's worker stats travel in run.json)."""
    meta, split = info["trace_meta"], info["wall_split_s"]
    slots = meta["rounds"] * len(meta["payload_bytes"])
    return {"devices": config.devices, "channel": config.scenario.channel, "model": config.model.name,
            "area_side_m": meta["area_side_m"], "idle_density": meta["idle_density"],
            "ns3_s_per_round": meta["simulate_seconds"] / slots, "ns3_setup_s": meta["setup_seconds"],
            "events_per_frame": meta["events"] / meta["frames_sent"], "events_per_round": meta["events"] / slots,
            "ns3_peak_mb": meta["peak_rss_mb"],
            "learner_s_per_round": (split.get("training", 0.0) + split.get("aggregation", 0.0))
            / info["rounds_completed"],
            "evaluation_s": split.get("evaluation", 0.0) / (info["rounds_completed"] + 1),  # round 0 is evaluated too
            "learner_peak_mb": info.get("peak_resident_mb", math.nan)}


def fitted_exponent(rows: pd.DataFrame, figure: str) -> float:
    fit = rows[rows["devices"] >= FIT_FROM]
    return float(np.polyfit(np.log(fit["devices"]), np.log(fit[figure]), 1)[0]) if len(fit) >= 2 else math.nan


def cost_markdown(cost: pd.DataFrame) -> str:
    rows = []
    for _, r in cost.sort_values(["model", "channel", "devices"]).iterrows():
        rows.append([str(r["devices"]), r["channel"], r["model"], f"{r['area_side_m']:.0f}", f"{r['idle_density']:.3f}",
                     f"{r['ns3_s_per_round']:.2f}", f"{r['events_per_frame']:.0f}", f"{r['ns3_peak_mb']:.0f}",
                     f"{r['learner_s_per_round']:.3f}", f"{r['evaluation_s']:.2f}", f"{r['learner_peak_mb']:.0f}"])
    table = markdown_table(["N", "channel", "model", "side (m)", "idle density", "ns-3 s / round", "events / frame",
                            "ns-3 peak MB", "learner s / round", "s / evaluation", "learner peak MB"], rows)
    fits = []
    for channel, group in cost[cost["model"] == "logreg"].groupby("channel"):
        fits.append([channel, f"{fitted_exponent(group, 'ns3_s_per_round'):.2f}",
                     f"{fitted_exponent(group, 'events_per_round'):.2f}",
                     f"{fitted_exponent(group, 'events_per_frame'):.2f}",
                     f"{fitted_exponent(group, 'learner_s_per_round'):.2f}"])
    fit_table = markdown_table([f"channel (fit over N = {FIT_FROM}-1,000)", "ns-3 s / round ∝ N^b", "events / round",
                                "events / frame", "learner s / round"], fits)
    pruned = cost[(cost["channel"] == "spectrum_pruned") & (cost["model"] == "logreg")].set_index("devices")
    ratio = (pruned.loc[1000, "events_per_frame"] / pruned.loc[200, "events_per_frame"]
             if {200, 1000} <= set(pruned.index) else math.nan)
    return "\n".join([table, "", fit_table, "",
                      f"Events per frame on the pruned channel, 1,000 devices against 200: **{ratio:.2f}×**."])


def pruning_rows(results_root: Path, cache_dir: Path) -> pd.DataFrame:
    """Per placement, each channel's trace against the unpruned spectrum channel's (same seed)."""
    from experiments.run.runner import trace_request

    traces = {}
    for _, config in load_sweep(SWEEPS["pruning"]).runs:
        trace, _ = obtain_trace(**trace_request(config), cache_dir=cache_dir)
        placement = f"{config.scenario.mean_neighbours:g} neighbours" if config.scenario.mean_neighbours else \
            f"density {config.scenario.density:g}"
        traces[placement, config.scenario.channel] = trace
    rows = []
    for (placement, channel), trace in traces.items():
        reference = traces[placement, "spectrum"]
        intended = reference.intended
        done, ref_done = ~np.isnan(trace.done_s), ~np.isnan(reference.done_s)
        rate, ref_rate = done.mean(axis=(0, 1)), ref_done.mean(axis=(0, 1))  # per ordered pair over the rounds
        pairs = reference.intended.any(axis=(0, 1))
        times, ref_times = trace.done_s[done & intended], reference.done_s[ref_done & intended]
        identical = all(np.array_equal(getattr(trace, name), getattr(reference, name), equal_nan=True)
                        for name in ("rx_bytes", "done_s", "intended", "radio_s", "positions"))
        rows.append({"placement": placement, "channel": channel, "side_m": trace.meta["area_side_m"],
                     "identical_to_unpruned": identical,
                     "delivered": float(done[intended].mean()),
                     "pair_rate_mean_abs_diff": float(np.abs(rate - ref_rate)[pairs].mean()),
                     "pair_rate_max_abs_diff": float(np.abs(rate - ref_rate)[pairs].max()),
                     "pair_rounds_changed": float((done != ref_done)[intended].mean()),
                     "median_completion_s": float(np.median(times)) if times.size else math.nan,
                     "ks_p": float(stats.ks_2samp(times, ref_times).pvalue) if times.size and ref_times.size
                     else math.nan,
                     "events_per_frame": float(trace.events.sum() / trace.frames.sum())})
    return pd.DataFrame(rows).sort_values(["placement", "channel"], kind="stable")


def pruning_markdown(pruning: pd.DataFrame) -> str:
    rows = [[r["placement"], f"{r['side_m']:.0f}", r["channel"], "yes" if r["identical_to_unpruned"] else "no",
             f"{r['delivered']:.4f}", f"{r['pair_rate_mean_abs_diff']:.4f}", f"{r['pair_rate_max_abs_diff']:.3f}",
             f"{100 * r['pair_rounds_changed']:.2f} %", f"{r['median_completion_s']:.3f}", f"{r['ks_p']:.2f}",
             f"{r['events_per_frame']:.0f}"] for _, r in pruning.iterrows()]
    return markdown_table(["placement (100 devices)", "side (m)", "channel", "arrays identical to unpruned",
                           "delivered (of addressed)", "mean abs Δ pair rate", "max abs Δ pair rate",
                           "pair-rounds changed", "median completion (s)", "KS p vs unpruned", "events / frame"], rows)


def measure_speedup(results_root: Path) -> dict:
    """Wall seconds to make one trace serially, in chunks on 1 worker and on 2 (fresh caches, `nsdml sweep
    --traces-only`, what a researcher runs). Measured once; the file keeps when and where."""
    path = results_root / SPEEDUP_FILE
    if path.exists():
        return json.loads(path.read_text())
    base = (CONFIGS / "scale_cost.toml").read_text()
    walls = {}
    with tempfile.TemporaryDirectory(prefix="nsdml-speedup-") as scratch:
        for label, chunk_rounds, workers in (("serial", 0, 1), ("2 chunks, 1 worker", SPEEDUP["chunk_rounds"], 1),
                                             ("2 chunks, 2 workers", SPEEDUP["chunk_rounds"], 2)):
            case = Path(scratch) / label.replace(" ", "_").replace(",", "")
            case.mkdir()
            config = case / "sweep.toml"
            config.write_text(base.replace("rounds = 2", f"rounds = {SPEEDUP['rounds']}")
                              .replace("devices = [20, 50, 100, 200, 500, 1000]", f"devices = {SPEEDUP['devices']}")
                              .replace('channel = ["yans", "spectrum_pruned"]', 'channel = "spectrum_pruned"')
                              + f"trace_chunk_rounds = {chunk_rounds}\n")
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "experiments.cli", "sweep", str(config), "--traces-only",
                            "--workers", str(workers), "--quiet", "--cache", str(case / "cache"),
                            "--results", str(case / "results")], check=True)
            walls[label] = time.perf_counter() - started
    record = {"case": SPEEDUP, "wall_s": walls, "machine": machine_record(),
              "measured_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    write_atomically(path, json.dumps(record, indent=2))
    return record


def speedup_markdown(record: dict) -> str:
    walls = record["wall_s"]
    serial = walls["serial"]
    rows = [[label, f"{wall:.0f}", f"{serial / wall:.2f}×"] for label, wall in walls.items()]
    case = record["case"]
    return "\n".join([markdown_table([f"{case['devices']} devices, {case['rounds']} rounds", "wall s",
                                      "speed-up vs serial"], rows), "",
                      f"Measured {record['measured_utc']} on {record['machine']['cores']} cores "
                      f"({record['machine']['cpu']}), one trace at a time, from a fresh cache (each wall includes "
                      f"starting the workers and compiling the C++ helper: about 5 s per worker)."])


def long_trace_markdown(results_root: Path) -> str:
    runs = finished_runs(SWEEPS["trace"], results_root)
    if not runs:
        return "The 1,000-device trace has no finished run yet."
    config, info = runs[0]
    meta = info["trace_meta"]
    chunk_walls = [c["setup_seconds"] + c["simulate_seconds"] for c in meta["chunks"]]
    rows = [[str(config.devices), str(meta["rounds"]), str(len(meta["chunks"])),
             f"{max(chunk_walls) / 60:.1f}", f"{sum(chunk_walls) / 60:.1f}", f"{meta['events'] / 1e6:.0f}",
             f"{meta['events'] / meta['frames_sent']:.0f}", f"{meta['peak_rss_mb']:.0f}", info["status"],
             f"{info['rounds_completed']}", f"{info['wall_seconds'] / 60:.1f}",
             f"{info.get('peak_resident_mb', math.nan):.0f}"]]
    return markdown_table(["N", "rounds", "chunks", "longest chunk (min)", "chunks summed (min)", "events (M)",
                           "events / frame", "ns-3 peak MB", "run", "rounds run", "run wall (min)",
                           "run peak MB"], rows)


def campaign(results_root: Path) -> str:
    tuning_sweep = load_sweep(SWEEPS["tuning"])
    tuning = tuning_table(write_summary(tuning_sweep, results_root), tuning_sweep.runs[0][1].rounds)
    sweep = load_sweep(SWEEPS["table"])
    summary = write_summary(sweep, results_root)
    runs = summary[summary["status"].isin(("done", "diverged"))]
    check_rates(runs, chosen_rates(tuning), sweep.name)
    setting = ["devices", "algorithm.name"]
    figures = ("final_acc", *dict(TO_TARGET))
    table = settings_table(runs, setting, figures, tuple(dict(TO_TARGET)))
    target = sweep.target_accuracy
    rows = [[str(r["devices"]), r["algorithm.name"], shown(r["final_acc"], r["final_acc_half"], 3),
             *[to_target_cell(r, figure, digits) for figure, digits in TO_TARGET]] for _, r in table.iterrows()]
    differences = paired_differences(runs.sort_values(["algorithm.name", "seed"]), setting,
                                     figures=("final_acc", *dict(TO_TARGET)))
    paired = [[str(r["devices"]), r["algorithm"], str(r["pairs"]),
               shown(r["final_acc_diff"], r["final_acc_half"], 3, signed=True),
               *[f"{shown(r[f'{f}_diff'], r[f'{f}_half'], d, signed=True)} ({r[f'{f}_pairs']})" for f, d in TO_TARGET]]
              for _, r in differences.iterrows()]
    seeds = ", ".join(map(str, sorted(runs["seed"].unique())))
    return "\n".join([
        f"**Learning rates**, tuned on seed 0 at 200 devices (rounds to {target:g}, never reached counted as "
        f"rounds + 1; ties to the higher final accuracy; bold: chosen):", "", tuning_markdown(tuning), "",
        f"**Per device count** (means ± 95 % t intervals over seeds {seeds}; to the target: the interval only when "
        f"every seed reached it, k/n always shown):", "",
        markdown_table(["N", "algorithm", "final acc", f"rounds to {target:g}", f"s to {target:g}",
                        f"J to {target:g}"], rows), "",
        "**HyperPrism minus D-PSGD**, seed by seed (to the target over the seeds where both reached it):", "",
        markdown_table(["N", "difference", "pairs", "Δ final acc", "Δ rounds (pairs)", "Δ s (pairs)",
                        "Δ J (pairs)"], paired)])


def build(results_root: Path, cache_dir: Path) -> str:
    cost = pd.DataFrame([cost_row(config, info) for name in ("cost", "cnn")
                         for config, info in finished_runs(SWEEPS[name], results_root)])
    speedup = results_root / SPEEDUP_FILE
    return "\n".join([
        "**Cost per round** (logistic-regression messages, 31,400 B; the small CNN's, 29,480 B; a mean of 10 "
        "neighbours; seed 1):", "", cost_markdown(cost), "",
        "**What pruning changes** (ten rounds; each channel against the unpruned spectrum channel, same seed):", "",
        pruning_markdown(pruning_rows(results_root, cache_dir)), "",
        "**Chunks in parallel**:", "",
        speedup_markdown(json.loads(speedup.read_text())) if speedup.exists() else "not measured yet "
        "(`python -m experiments.campaigns.scale_table --speedup`)", "",
        "**The 1,000-device, 100-round trace** (4 chunks of 25 rounds, two at a time on this machine's 2 cores) "
        "and the D-PSGD run over it:", "", long_trace_markdown(results_root), "",
        campaign(results_root), ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.campaigns.scale_table", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/traces"))
    parser.add_argument("--speedup", action="store_true", help="measure the chunked speed-up (once) and stop")
    args = parser.parse_args(argv)
    if args.speedup:
        print(json.dumps(measure_speedup(args.results)["wall_s"]), file=sys.stderr)
        return 0
    try:
        text = build(args.results, args.cache)
    except TuningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = load_sweep(SWEEPS["table"]).summary_dir(args.results)
    write_atomically(out / "scale_table.md", text)
    print(f"written: {out}/scale_table.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
