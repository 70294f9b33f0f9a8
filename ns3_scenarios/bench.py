"""Measure the ns-3 side: cost per simulated round, and calibrated idle density. Imports ns-3 (its own process).

    python -m ns3_scenarios.bench            # make bench-ns3: wall s / round and events / s, stepped vs rebuilt
    python -m ns3_scenarios.bench --density  # make density-table: target vs measured idle density

Stepped: one simulation built once (placement, probe), then one slot per
round, as the offline and online workers run it. Each method runs one untimed
warm-up round first. C++ only: the same simulation (same seed, the same
events) with all timed slots run by one C++ call, no Python between slots:
the cost of the simulation itself, which stepped is held against. Rebuilt: every round a fresh
simulation (nodes, WiFi, IP stack, sockets) runs that round's exchange and is
destroyed, the way couplings that restart ns-3 per round work (same placement
and neighbours; a fresh RNG run per round; mobility, queues and TCP state do
not carry over). "Process per round" adds this process's ns-3 import time, for
couplings that start a new ns-3 process every round.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from ns3_scenarios import ns3_loader, network
from ns3_scenarios.scenario import ScenarioConfig


def _timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def bench_case(cpp, config: ScenarioConfig, payload: int, rounds: int, seed: int) -> dict:
    payloads = [payload] * config.devices
    setup_s, stepped = _timed(lambda: network.Network(config, seed))
    stepped.run_slot(0, payloads)  # untimed warm-up round (first-touch allocations), as for the rebuilt runs
    walls, events, delivered = [], 0, 0
    for r in range(1, rounds + 1):
        wall, slot = _timed(lambda: stepped.run_slot(r, payloads))
        walls.append(wall)
        events += int(slot["events"])
        delivered += int((~np.isnan(slot["done_s"])).sum())
    stepped.close()
    # The same simulation (same seed, so the same events) with every timed slot run inside one C++ call.
    alone = network.Network(config, seed)
    alone.run_slots_in_cpp(0, 1, payloads)  # the warm-up slot, which also JIT-compiles the call
    cpp_wall, cpp_events = _timed(lambda: alone.run_slots_in_cpp(1, rounds, payloads))
    alone.close()

    neighbours = network.to_vector(cpp, "int", stepped.idle_delivered.ravel())
    rebuilt_walls, rebuilt_events = [], 0
    for r in range(rounds + 1):
        def fresh_round():
            simulation = network.build_network(cpp, config, seed + r, stepped.placement.positions_m,
                                        stepped.placement.side_m)
            simulation.SetNeighbours(neighbours)
            values = network.to_numpy(simulation.RunSlot(0, network.to_vector(cpp, "uint32_t", payloads)))
            simulation.Destroy()
            return int(values[-1])

        wall, slot_events = _timed(fresh_round)
        if r > 0:  # round 0 is the untimed warm-up
            rebuilt_walls.append(wall)
            rebuilt_events += slot_events
    stepped_s, rebuilt_s = float(np.median(walls)), float(np.median(rebuilt_walls))  # medians over rounds
    return {
        "devices": config.devices, "payload_bytes": payload, "rounds": rounds,
        "setup_s": round(setup_s, 3),
        "stepped_s_per_round": round(stepped_s, 4),
        "stepped_events_per_s": round(events / sum(walls)),
        "cpp_only_s_per_round": round(cpp_wall / rounds, 4),
        "stepped_over_cpp_only": round(sum(walls) / cpp_wall, 3),  # the same slots, all timed
        "same_events": cpp_events == events,
        "rebuilt_s_per_round": round(rebuilt_s, 4),
        "rebuilt_events_per_s": round(rebuilt_events / sum(rebuilt_walls)),
        "rebuilt_over_stepped": round(rebuilt_s / stepped_s, 2),
        "events_per_round": round(events / rounds),
        "delivered_pairs_per_round": round(delivered / rounds, 1),
    }


def density_case(config: ScenarioConfig, seed: int) -> dict:
    setup_s, probed = _timed(lambda: network.Network(config, seed))
    probed.close()
    stats = probed.stats
    return {
        "devices": config.devices, "fading": config.fading, "seed": seed, "target": config.density,
        "measured": round(stats["idle_density"], 4), "geometric": round(stats["geometric_density"], 4),
        "error": round(stats["idle_density"] - config.density, 4), "calibration": stats["calibration"],
        "calibration_steps": stats["calibration_steps"], "side_m": round(stats["area_side_m"], 1),
        "seconds": round(setup_s, 2),
    }


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(str(row[c])) for row in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(row[c]).rjust(w) for c, w in zip(columns, widths)))
    sys.stdout.flush()


def _write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"written {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ns3_scenarios.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--density", action="store_true", help="measure the idle density table instead")
    parser.add_argument("--devices", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--payloads", type=int, nargs="+", default=[1400, 31400], help="bytes per message")
    parser.add_argument("--rounds", type=int, default=3, help="rounds timed per case and method")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.2, 0.5, 0.8], help="density targets")
    parser.add_argument("--fading", nargs="+", default=["none", "nakagami"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, help="CSV (default results/bench_ns3.csv or results/density_table.csv)")
    args = parser.parse_args(argv)

    load_s, cpp = _timed(ns3_loader.load)
    print(f"ns-3 {ns3_loader.ns3_version()} loaded in {load_s:.1f} s (one import per process)")
    warm = network.Network(ScenarioConfig(devices=2), 0)  # compiles the helper's code paths once
    warm.run_slot(0, [1400, 1400])
    warm.close()
    rows = []
    if args.density:
        columns = ["devices", "fading", "seed", "target", "measured", "geometric", "error", "calibration_steps",
                   "side_m", "seconds"]
        for fading in args.fading:
            for n in args.devices:
                for target in args.targets:
                    for seed in args.seeds:
                        rows.append(density_case(ScenarioConfig(devices=n, density=target, fading=fading), seed))
                        print(" ".join(f"{c}={rows[-1][c]}" for c in columns), flush=True)
        out = args.out or Path("results/density_table.csv")
    else:
        columns = ["devices", "payload_bytes", "stepped_s_per_round", "stepped_events_per_s", "cpp_only_s_per_round",
                   "stepped_over_cpp_only", "same_events", "rebuilt_s_per_round",
                   "rebuilt_events_per_s", "rebuilt_over_stepped", "process_per_round_s", "events_per_round",
                   "delivered_pairs_per_round"]
        for n in args.devices:
            for payload in args.payloads:
                row = bench_case(cpp, ScenarioConfig(devices=n), payload, args.rounds, args.seeds[0])
                row["process_per_round_s"] = round(row["rebuilt_s_per_round"] + load_s, 2)
                rows.append(row)
                print(" ".join(f"{c}={row[c]}" for c in columns), flush=True)
        out = args.out or Path("results/bench_ns3.csv")
    print()
    _print_table(rows, columns)
    _write_csv(rows, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
