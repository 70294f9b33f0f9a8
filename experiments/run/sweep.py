"""Sweeps: a TOML file whose list-valued fields expand to the cartesian product of runs.

    seed = [0, 1]              # any run-config field; a list is an axis
    rounds = 100               # (top-level keys come before the first [table], as TOML requires)

    [sweep]
    name = "density"           # summary goes to results/sweeps/<name>/
    target_accuracy = 0.8      # Conv. Rds = first round whose mean test accuracy reaches this
    [network]
    density = [0.2, 0.5, 0.8]
    [algorithm]
    name = ["dpsgd", "dsgt"]
    [algorithm_overrides.dsgt] # merged into [algorithm] for runs of that algorithm only
    lr = 0.05

Every expanded config is validated before anything runs. Each run is a normal
run directory ``results/<run-id>/`` (the id hashes the resolved config), so a
finished run is never recomputed and any sweep sharing it reuses it. Tables and
plots are built from the run CSVs only.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bridge.link_models import LINK_MODELS
from experiments.run.atomic import write_atomically
from experiments.config import ConfigError, RunConfig, check_name, parse_config, read_toml
from experiments.run.progress import progress_bar
from experiments.run.run_writer import (FINISHED, finished_damage, recorded_number, reusable, run_status,
                                        stale_because)
from experiments.analysis.statistics import FIGURES, TO_TARGET, mean_interval, paired_differences, shown


@dataclass(frozen=True)
class Sweep:
    name: str
    target_accuracy: float
    axes: tuple[str, ...]  # dotted field names that vary, e.g. "network.density"
    runs: tuple[tuple[dict[str, Any], RunConfig], ...]  # (axis values, config) per run

    def summary_dir(self, results_root: Path) -> Path:
        return Path(results_root) / "sweeps" / self.name


def load_sweep(path: Path) -> Sweep:
    """Read, expand and validate a sweep file; every problem is a ConfigError naming the field."""
    return expand_sweep(read_toml(path, kind="sweep"), default_name=Path(path).stem)


MAX_RUNS = 10_000  # a sweep larger than this is almost surely a typo; split it into several files


def expand_sweep(raw: dict[str, Any], default_name: str = "sweep") -> Sweep:
    raw = copy.deepcopy(raw)
    settings = raw.pop("sweep", {})
    overrides = raw.pop("algorithm_overrides", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"sweep: expected a table [sweep] with name and target_accuracy, got {settings!r}")
    unknown = set(settings) - {"name", "target_accuracy", "cases"}
    if unknown:
        raise ConfigError(f"sweep.{sorted(unknown)[0]}: unknown field; allowed: name, target_accuracy, cases")
    name = settings.get("name", default_name)
    if "name" in settings:
        check_name("sweep.name", name)
    else:
        check_name("sweep.name (taken from the file name when not set)", name)
    target = settings.get("target_accuracy", 0.8)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 < target <= 1.0:
        raise ConfigError(f"sweep.target_accuracy: {target!r} is not allowed; expected a number in (0, 1]")
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        raise ConfigError("algorithm_overrides: expected tables [algorithm_overrides.<algorithm name>]")

    cases = _cases(settings.get("cases", [{}]))
    points, axis_names, bases = [], {}, []
    for case in cases:  # each case's fields set together, crossed with the grid of the other list fields
        base = copy.deepcopy(raw)
        for path, value in case.items():
            _set(base, path, value)
        axes = _list_fields(base)
        _check_axes(axes)
        bases.append(base)
        axis_names.update(dict.fromkeys([*case, *(path for path, _ in axes)]))
        points += [{**case, **dict(zip((path for path, _ in axes), values))}
                   for values in itertools.product(*(axis_values for _, axis_values in axes))]
    _check_overrides(overrides, bases)
    if len(points) > MAX_RUNS:
        raise ConfigError(f"sweep.cases: {len(points)} runs, more than {MAX_RUNS}; split the sweep into several files")
    runs, seen = [], {}
    for point in points:
        concrete = copy.deepcopy(raw)
        for path, value in point.items():
            _set(concrete, path, value)
        algorithm = concrete.setdefault("algorithm", {})
        if isinstance(algorithm, dict) and isinstance(algorithm.get("name", "dpsgd"), str):
            algorithm.update(overrides.get(algorithm.get("name", "dpsgd"), {}))
        concrete.setdefault("name", name)
        where = ", ".join(f"{k}={v!r}" for k, v in point.items()) or "the base config"
        try:
            config = parse_config(concrete)
        except ConfigError as error:
            hint = ("; to pair fields instead of crossing them, list the pairs as [[sweep.cases]] tables"
                    if len(point) > 1 and "cases" not in settings else "")
            raise ConfigError(f"{error} (in the run with {where}){hint}") from error
        if config.run_id in seen:
            raise ConfigError(f"{', '.join(point) or 'sweep'}: the runs with {seen[config.run_id]} and with {where} "
                              f"are the same run; remove the duplicate value")
        seen[config.run_id] = where
        runs.append((point, config))
    return Sweep(str(name), float(target), tuple(axis_names), tuple(runs))


def _cases(cases: Any) -> list[dict[str, Any]]:
    """``[[sweep.cases]]``: tables of fields that vary together (each case one value per field, dotted paths or
    nested tables), as flat {dotted path: value}."""
    if not isinstance(cases, list) or not cases or not all(isinstance(case, dict) for case in cases):
        raise ConfigError("sweep.cases: expected one or more tables [[sweep.cases]], each setting fields together, "
                          "e.g. network.schedule = \"async\" with algorithm.name = \"async_dpsgd\"")
    flat = []
    for index, case in enumerate(cases):
        fields = flatten(case)
        for path, value in fields.items():
            if isinstance(value, list):
                raise ConfigError(f"sweep.cases[{index}].{path}: a case sets one value per field (a list is an axis: "
                                  f"put it outside the cases to cross it with them)")
        flat.append(fields)
    return flat


def _check_axes(axes: list[tuple[str, list]]) -> None:
    """No axis repeats a value (it would compute one run twice and report a spread of 0); the product is capped."""
    for path, values in axes:
        for index, value in enumerate(values):
            if any(_same_value(value, other) for other in values[:index]):
                raise ConfigError(f"{path}: {value!r} appears twice in {values!r}; each value of an axis gives "
                                  f"its own runs")
    total = math.prod(len(values) for _, values in axes)
    if total > MAX_RUNS:
        sizes = " x ".join(f"{len(values)} {path}" for path, values in axes)
        raise ConfigError(f"{', '.join(path for path, _ in axes)}: {sizes} = {total} runs, more than {MAX_RUNS}; "
                          f"split the sweep into several files")


def _same_value(a: Any, b: Any) -> bool:
    """1 and 1.0 are the same density; True and 1 are not the same value."""
    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return a == b if numeric(a) and numeric(b) else type(a) is type(b) and a == b


def _check_overrides(overrides: dict[str, dict], bases: list[dict[str, Any]]) -> None:
    """Each [algorithm_overrides.X] must name an algorithm of the sweep (of one of its cases) and may not
    rename it."""
    in_sweep = []
    for raw in bases:
        algorithm = raw.get("algorithm", {})
        names = algorithm.get("name", "dpsgd") if isinstance(algorithm, dict) else "dpsgd"
        in_sweep += [name for name in (names if isinstance(names, list) else [names]) if name not in in_sweep]
    for key, values in overrides.items():
        if key not in in_sweep:
            raise ConfigError(f"algorithm_overrides.{key}: no run of this sweep uses algorithm {key!r}; "
                              f"its algorithms: {', '.join(map(str, in_sweep))}")
        if "name" in values:
            raise ConfigError(f"algorithm_overrides.{key}.name: an override sets hyperparameters of {key!r}; it "
                              f"cannot rename the algorithm")


def _list_fields(raw: dict[str, Any], prefix: str = "") -> list[tuple[str, list]]:
    """The sweep's axes: every list-valued field, by dotted path (read_toml has bounded the nesting)."""
    found = []
    for key in sorted(raw):
        value, path = raw[key], f"{prefix}{key}"
        if isinstance(value, dict):
            found.extend(_list_fields(value, path + "."))
        elif isinstance(value, list):
            if not value:
                raise ConfigError(f"{path}: an empty list gives no runs")
            found.append((path, value))
    return found


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for parent in parents:
        raw = raw.setdefault(parent, {})
    raw[leaf] = value


def failure_record(results_root: Path, run_id: str) -> Path:
    return Path(results_root) / "failed" / f"{run_id}.json"


def run_sweep(sweep: Sweep, results_root: Path, cache_dir: Path, workers: int = 1, ray_address: str | None = None,
              quiet: bool = False) -> pd.DataFrame:
    """Run every missing run, then write the summary, table and plots.

    Traces that several runs share are made first, once each; then the runs
    go to the executor (this process, a local pool, or Ray). A run that fails
    is recorded under ``results/failed/`` and retried by the next call; a
    finished run is never recomputed, so an interrupted sweep resumes.
    """
    from experiments.run.execution import execute, run_task

    from experiments.run.fingerprint import run_fingerprint

    results_root, cache_dir = Path(results_root), Path(cache_dir)
    fingerprints = {c.run_id: run_fingerprint(c) for _, c in sweep.runs}
    pending = [c for _, c in sweep.runs if not reusable(results_root / c.run_id, fingerprints[c.run_id])]
    stale = [stale_because(results_root / c.run_id, fingerprints[c.run_id]) for c in pending
             if run_status(results_root / c.run_id) in FINISHED]
    # Every trace the pending runs need is made first, once each, so the runs' ETA counts runs only.
    traces = distinct_traces([config for config in pending if config.network.mode == "offline"])
    missing = [config for config in traces if not trace_cached(config, cache_dir)]
    log = (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr))
    log(f"[sweep {sweep.name}] {len(sweep.runs) - len(pending)} runs reused, {len(pending)} to run; "
        f"{len(traces) - len(missing)} link traces cached, {len(missing)} to simulate")
    if missing:
        trace_bar = progress_bar(len(missing), f"sweep {sweep.name}: link traces", "trace", enabled=not quiet)
        make_traces(sweep, missing, cache_dir, workers, ray_address, log=trace_bar.write, done=trace_bar.update)
        trace_bar.close()
    bar = progress_bar(len(sweep.runs), f"sweep {sweep.name}", "run", enabled=not quiet,
                       initial=len(sweep.runs) - len(pending))
    failed = 0
    tasks = [(run_task, (config.to_dict(), str(results_root), str(cache_dir))) for config in pending]
    for run_id, status, error in execute(tasks, workers, ray_address):
        record = failure_record(results_root, run_id)
        if error:
            failed += 1
            write_atomically(record, json.dumps({"run_id": run_id, "error": error}, indent=2))
            bar.write(f"[sweep {sweep.name}] run {run_id} failed: {error_summary(error)}")
        else:
            record.unlink(missing_ok=True)
        bar.update()
        bar.set_postfix(failed=failed)
    bar.close()
    summary = write_summary(sweep, results_root)
    summary.attrs["recomputed"] = {reason.split(" (")[0]: stale.count(reason) for reason in set(stale)}
    return summary


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt): ")


def error_summary(error: str) -> str:
    """The line of a failure's traceback worth a log line: the exception's own (e.g. a worker's exit code
    and signal, above the stderr it quotes), else the last line."""
    lines = error.strip().splitlines() or [""]
    return next((line for line in reversed(lines) if EXCEPTION_LINE.match(line)), lines[-1])


def make_traces(sweep: Sweep, configs: list, cache_dir: Path, workers: int = 1, ray_address: str | None = None,
                log=print, done=lambda: None) -> int:
    """Make (or find in the cache) the offline link trace of each config, in the order given; returns how many
    failed.

    Traces are cached by scenario, payloads, rounds, seed and the simulator's code (not the learner's), so
    ``nsdml sweep --traces-only`` can simulate a campaign's traces ahead of its runs (on another machine too:
    copy the cache). An ns-3
    worker's memory no longer grows with the traffic (ns3_scenarios/README.md, "Worker memory"), so any
    ``workers`` of them run side by side."""
    from bridge.link_source import missing_chunks
    from experiments.run.execution import chunk_task, execute, trace_task
    from experiments.run.runner import trace_request

    failed = 0
    # Chunked ns-3 traces (network.trace_chunk_rounds): every missing chunk is a task of its own, so the pool or
    # the Ray cluster simulates a long trace's chunks side by side; each trace task below then joins them.
    chunk_jobs = [(chunk_task, (config.to_dict(), str(cache_dir), chunk)) for config in configs
                  for chunk in missing_chunks(**trace_request(config), cache_dir=cache_dir)]
    for label, error in execute(chunk_jobs, workers, ray_address) if chunk_jobs else ():
        if error:
            log(f"[sweep {sweep.name}] trace {label} failed: {error_summary(error)}")
    tasks = [(trace_task, (config.to_dict(), str(cache_dir))) for config in configs]
    for key, error in execute(tasks, workers, ray_address):
        if error:
            failed += 1
            log(f"[sweep {sweep.name}] trace {key} failed: {error_summary(error)}")
        done()
    return failed


def trace_cached(config, cache_dir: Path) -> bool:
    """Whether the offline trace ``config`` replays is in the cache already (a damaged entry is made again)."""
    from experiments.run.runner import trace_request

    return (Path(cache_dir) / _trace_identity(trace_request(config)) / "meta.json").is_file()


def sweep_traces(sweep: Sweep) -> list:
    """One config per distinct offline trace the sweep's runs replay, the costliest first: a pool then
    starts the long traces (Mudag's four exchanges at 100 devices) early instead of ending on one alone."""
    return distinct_traces([config for _, config in sweep.runs if config.network.mode == "offline"])


def distinct_traces(configs: list) -> list:
    """One config per distinct trace among ``configs``, the costliest first."""
    from experiments.run.execution import unique_by
    from experiments.run.runner import trace_request

    distinct = unique_by(configs, key=lambda config: _trace_identity(trace_request(config)))
    return sorted(distinct, key=trace_cost, reverse=True)  # stable: equal costs keep the sweep's order


def trace_cost(config) -> int:
    """Bytes heard in a trace, as if every node heard every other: nodes squared × the bytes each node
    sends per round × rounds. Simulation time scales so (ns-3 events: 27 M for one 31,400 B model,
    50 devices, 100 rounds; twice that for ADOM+'s two, four times for Mudag's), where memory does not."""
    return config.scenario.nodes ** 2 * sum(config.payloads) * config.rounds


def _trace_identity(request: dict) -> str:
    from bridge import trace_key

    return trace_key(**request)


def summarize_run(run_dir: Path, target_accuracy: float, senders: int | None = None) -> dict[str, Any]:
    """Max Acc, Conv. Rds, time to target, traffic and wall time of one finished run, from its files.
    ``senders``: the nodes of its network (default: its devices)."""
    metrics = pd.read_csv(run_dir / "metrics.csv")
    links = pd.read_csv(run_dir / "links.csv")
    info = json.loads((run_dir / "run.json").read_text())
    wall = recorded_number(info.get("wall_seconds"))  # absent in runs made by older code
    reached = metrics.index[metrics["mean_accuracy"] >= target_accuracy]
    first = metrics.loc[reached[0]] if len(reached) else None
    # links.csv's payload_bytes is the mean over an exchange's senders: every node, an access point included
    senders = senders or int(pd.read_csv(run_dir / "devices.csv")["device"].count())
    return {
        "status": info["status"],
        "rounds_completed": info.get("rounds_completed", math.nan),
        "max_acc": float(metrics["mean_accuracy"].max()),
        "final_acc": float(metrics["mean_accuracy"].dropna().iloc[-1]),  # the last evaluated round
        "conv_rounds": int(first["round"]) if first is not None else math.nan,
        # per device; a mean over devices under async (never truncated)
        "steps_to_target": float(first["local_steps"]) if first is not None else math.nan,
        "local_steps": float(metrics["local_steps"].iloc[-1]),
        "time_to_target_s": float(first["sim_time_s"]) if first is not None else math.nan,
        "sim_time_s": float(metrics["sim_time_s"].iloc[-1]),
        "energy_to_target_j": float(first["cumulative_energy_j"]) if first is not None else math.nan,
        "energy_j": float(metrics["cumulative_energy_j"].iloc[-1]),
        "bytes_sent": int((links["payload_bytes"] * senders).sum()) if len(links) else 0,
        "bytes_received": int(links["bytes_received"].sum()) if len(links) else 0,
        "bytes_on_air": int(links["bytes_on_air"].sum()) if "bytes_on_air" in links else math.nan,
        "wall_s": math.nan if wall is None else wall,
        "code_fingerprint": info.get("code_fingerprint"),
        "recomputed_because": info.get("recomputed_because"),
    }


def collect(sweep: Sweep, results_root: Path) -> pd.DataFrame:
    """One row per run: every config field (dotted names), run id, status and the run's summary figures.

    Status is done/diverged for a finished run, ``damaged`` for a finished run whose files no longer
    match run.json's record (its figures are left out and ``damaged_because`` says why; ``nsdml sweep``
    recomputes it), failed when the last attempt raised, missing otherwise. ``code_fingerprint`` says
    which code made each run (``nsdml sweep`` recomputes runs made by other code).
    """
    rows = []
    for _, config in sweep.runs:
        run_dir = Path(results_root) / config.run_id
        row = {**flatten(config.to_dict()), "run_id": config.run_id}
        if run_status(run_dir) in FINISHED:
            broken = finished_damage(run_dir)
            if broken:
                row.update(status="damaged", damaged_because=broken)
            else:
                row.update(summarize_run(run_dir, sweep.target_accuracy, config.scenario.nodes))
        else:
            row["status"] = "failed" if failure_record(results_root, config.run_id).exists() else "missing"
        rows.append(row)
    return pd.DataFrame(rows)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def group_axes(sweep: Sweep) -> list[str]:
    """The axes that define a table row: every axis but the seed."""
    return [axis for axis in sweep.axes if axis != "seed"]


def unswept_differences(sweep: Sweep) -> list[str]:
    """Fields that every run of the sweep has, that no axis sets, and that still differ between its runs: an
    algorithm's own default (learning rates differ per algorithm) makes rows compare more than the axes."""
    flat = [flatten(config.to_dict()) for _, config in sweep.runs]
    common = set.intersection(*(set(run) for run in flat)) if flat else set()
    return sorted(field for field in common - set(sweep.axes) - {"name", "seed"}
                  if len({json.dumps(run[field], sort_keys=True) for run in flat}) > 1)


def unswept_values(summary: pd.DataFrame, field: str, key: str = "algorithm.name") -> str:
    """'dpsgd 0.1, hyperprism 0.01': a field's values per ``key`` (what sets them), for a warning."""
    pairs = summary[[key, field]].drop_duplicates()
    return ", ".join(f"{name} {value}" for name, value in zip(pairs[key], pairs[field]))


def aggregate(summary: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of ``by``: the runs, and per figure its mean, std and 95 % t half-width over the seeds
    (``experiments.analysis.statistics``); figures to the target over the seeds that reached it (``reached`` counts
    them for Conv. Rds), their half-width only when every seed did."""
    done = summary[summary["status"].isin(FINISHED)]
    if not by:
        done = done.assign(_all="all")
        by = ["_all"]
    rows = []
    for key, group in done.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(by, key)), "runs": len(group)}
        for figure in (*FIGURES, *TO_TARGET):
            values = group[figure].astype(float)
            mean, half = mean_interval(values)
            reached = int(values.notna().sum())
            row.update({f"{figure}_mean": mean, f"{figure}_std": values.std(),
                        f"{figure}_half": half if reached == len(group) else math.nan})
            if figure == "conv_rounds":
                row["reached"] = reached
        row["bytes_sent_mean"] = group["bytes_sent"].astype(float).mean()
        rows.append(row)
    return pd.DataFrame(rows).drop(columns=["_all"], errors="ignore")


def markdown_table(table: pd.DataFrame, by: list[str], target_accuracy: float, link_models: list[str],
                   paired: pd.DataFrame | None = None) -> str:
    """Max and final accuracy, rounds, simulated seconds and energy to the target: mean ± the 95 % t
    half-width over seeds ('n/a' where one seed gives no spread; to the target only when every seed reached
    it, with k/n). The link model is a column when the sweep compares several, else stated above the table.
    ``paired``: the paired differences to each group's first algorithm, as a second table."""
    header = [*by, "runs", "Max Acc", "Final Acc", f"Conv. Rds (≥{target_accuracy:.2f})", "local steps to target",
              "time to target (sim s)", "energy to target (kJ)", "MB sent"]
    lines = [] if "network.link_model" in by else [f"Link model: {', '.join(link_models)}.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        runs = int(row["runs"])
        cells = [str(row[axis]) for axis in by] + [
            str(runs), shown(row["max_acc_mean"], row["max_acc_half"], 4),
            shown(row["final_acc_mean"], row["final_acc_half"], 4),
            _to_target(row, "conv_rounds", 1, runs), _to_target(row, "steps_to_target", 1, runs),
            _to_target(row, "time_to_target_s", 1, runs),
            _to_target(row, "energy_to_target_j", 2, runs, scale=1e-3), f"{row['bytes_sent_mean'] / 1e6:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", INTERVALS, "", "Message times: " + "; ".join(
        f"{model}: {LINK_MODELS[model].clock if model in LINK_MODELS else 'see its module'}" for model in link_models)
        + ".", "", SEND_TIMING, "", LEDGER]
    if paired is not None and not paired.empty:
        lines += ["", paired_markdown(paired)]
    return "\n".join(lines) + "\n"


SEND_TIMING = ("Sends: under every schedule each device sends U(0, network.start_jitter_s) after its compute ends "
               "(under rounds, after the exchange starts); on the controls and the barrier schedules the offsets are "
               "keyed by (seed, step, exchange, device), the same whatever the schedule; ns-3's rounds draw the same "
               "law from ns-3's stream.")
LEDGER = ("Energy: each device is charged exactly the time its clock counts, its radio in one state at a time "
          "(seconds x currents x voltage) plus its compute (messages/ledger.py).")
INTERVALS = ("Mean ± half-width of the 95 % Student t interval over the seeds (n/a: a single seed); figures to "
             "the target over the seeds that reached it (k/n), with an interval only when all did.")


def _to_target(row, figure: str, digits: int, runs: int, scale: float = 1.0) -> str:
    reached = int(row["reached"])  # a run reaches the target in rounds, seconds and joules at once
    if not reached:
        return f"— (0/{runs})"
    return f"{shown(row[f'{figure}_mean'] * scale, row[f'{figure}_half'] * scale, digits)} ({reached}/{runs})"


PAIRED = (("final_acc", "Final Acc", 4, 1.0), ("max_acc", "Max Acc", 4, 1.0), ("conv_rounds", "Conv. Rds", 1, 1.0),
          ("steps_to_target", "local steps to target", 1, 1.0), ("time_to_target_s", "sim s to target", 1, 1.0),
          ("energy_to_target_j", "kJ to target", 2, 1e-3))


def with_unswept(paired: pd.DataFrame, summary: pd.DataFrame, by: list[str], unswept: list[str],
                 algorithm: str = "algorithm.name") -> pd.DataFrame:
    """The paired rows with each unswept difference's value for the algorithm and for its reference."""
    if paired.empty or not unswept:
        return paired
    others = [axis for axis in by if axis != algorithm]

    def value(row: pd.Series, name: str, field: str) -> str:
        match = summary[summary[algorithm] == name]
        for axis in others:
            match = match[match[axis] == row[axis]]
        return ", ".join(map(str, dict.fromkeys(match[field])))

    paired = paired.copy()
    for position, field in enumerate(unswept):
        paired.insert(len(others) + 2 * position, field, [value(r, r["algorithm"], field) for _, r in paired.iterrows()])
        paired.insert(len(others) + 2 * position + 1, f"reference {field}",
                      [value(r, r["reference"], field) for _, r in paired.iterrows()])
    return paired


def paired_markdown(paired: pd.DataFrame) -> str:
    """Each algorithm minus its group's reference, seed by seed: mean ± 95 % t half-width (pairs)."""
    settings = [c for c in paired.columns if c not in ("algorithm", "reference", "pairs")
                and not any(c.startswith(figure + "_") for figure, *_ in PAIRED)]
    header = [*settings, "difference", *[label for _, label, _, _ in PAIRED]]
    lines = ["Paired differences (same seeds: same data split, initial models, mini-batches and link trace); "
             "to the target over the seeds where both reached it; Holm p: the paired t-test's p adjusted by Holm "
             "across every comparison of this table (below 0.05: significant):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in paired.iterrows():
        cells = [str(row[c]) for c in settings] + [f"{row['algorithm']} − {row['reference']}"]
        for figure, _, digits, scale in PAIRED:
            mean, half, pairs = row[f"{figure}_diff"], row[f"{figure}_half"], int(row[f"{figure}_pairs"])
            holm_p = row.get(f"{figure}_p_holm", math.nan)
            cells.append(f"{shown(mean * scale, half * scale, digits, signed=True)} ({pairs})"
                         + ("" if holm_p != holm_p else f", Holm p {holm_p:.2g}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(sweep: Sweep, results_root: Path) -> pd.DataFrame:
    """Write summary.csv, table.csv, table.md and the plots of a sweep, from the run CSVs only."""
    from experiments.analysis.figures import sweep_figures
    from experiments.analysis.plots import link_models_title, plot_bytes_per_algorithm, plot_link_density
    from experiments.run.run_outputs import CSV_FLOAT_FORMAT

    out = sweep.summary_dir(results_root)
    out.mkdir(parents=True, exist_ok=True)
    summary = collect(sweep, results_root)
    by, unswept = group_axes(sweep), unswept_differences(sweep)
    table = aggregate(summary, by + unswept)  # an unswept difference follows the axes: a column, not a split
    paired = with_unswept(paired_differences(summary, by), summary, by, unswept)
    write_atomically(out / "summary.csv", summary.to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
    write_atomically(out / "table.csv", table.to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
    write_atomically(out / "paired.csv", paired.to_csv(index=False, float_format=CSV_FLOAT_FORMAT))
    link_models = sorted({config.network.link_model for _, config in sweep.runs})
    markdown = markdown_table(table, by + unswept, sweep.target_accuracy, link_models, paired)
    if unswept:
        markdown = (f"**Not swept, yet different between rows:** "
                    + "; ".join(f"{field} ({unswept_values(summary, field)})" for field in unswept)
                    + ". These rows differ in more than the axes; sweep the field, or set it equal.\n\n" + markdown)
    if "algorithm.lr" in summary and "algorithm.lr" not in by + unswept:  # equal everywhere: say it once
        rates = summary[["algorithm.name", "algorithm.lr"]].drop_duplicates()
        markdown = (f"**Learning rates (algorithm.lr):** "
                    + ", ".join(f"{name} {lr:g}" for name, lr in rates.itertuples(index=False)) + ".\n\n" + markdown)
    write_atomically(out / "table.md", markdown)
    summary.attrs["unswept"] = {field: unswept_values(summary, field) for field in unswept}
    run_dirs = {config.run_id: Path(results_root) / config.run_id for _, config in sweep.runs}
    title = f"target accuracy {sweep.target_accuracy:.2f}; {link_models_title(summary)}"
    summary.attrs["figures_left_out"] = sweep_figures(summary, results_root, by, out, title)
    plot_link_density(summary, {run: d / "links.csv" for run, d in run_dirs.items()}, out)
    plot_bytes_per_algorithm(summary, out)
    return summary
