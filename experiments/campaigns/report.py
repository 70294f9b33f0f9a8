"""Write a measured report: ``experiments/reports/<name>.md``, stamped, from sweeps' CSVs only.

    python -m experiments.campaigns.report NAME SWEEP.toml [SWEEP.toml ...] [--extra TABLE_FILE ...] [--target MAKE-TARGET]

The report's hand-written text (the setting, the thresholds chosen before the
runs, the reading of the results) stays as it is; only the block between
``<!-- measured: begin -->`` and ``<!-- measured: end -->`` is replaced (and
added at the end when missing). The block holds the stamp, taken from the
runs' own run.json (the commits and machines that made them, the dates they
finished, their wall time, the seeds) and every sweep's ``table.md`` plus the
``--extra`` tables. A work tree with uncommitted changes to tracked files is
refused unless ``--allow-modified`` is given. The make target that measures a report calls this last, so a second
call recomputes nothing and rewrites the same tables.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from experiments.run.atomic import write_atomically
from experiments.config import ConfigError
from experiments.run.machine import DIRTY, code_commit
from experiments.run.run_writer import FINISHED, run_record
from experiments.run.sweep import Sweep, load_sweep, write_summary

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "experiments" / "reports"
BEGIN, END = "<!-- measured: begin -->", "<!-- measured: end -->"


def stamp(sweeps: list[Sweep], results_root: Path, target: str) -> str:
    """The stamp, from the runs' own records (run.json): the commits and machines that made them and when."""
    run_ids = {config.run_id for sweep in sweeps for _, config in sweep.runs}  # sweeps may share runs
    records = [run_record(results_root / run_id) for run_id in sorted(run_ids)]
    finished = [r for r in records if r.get("status") in FINISHED]
    wall = sum(float(r.get("wall_seconds", 0.0)) for r in finished)
    traces = {r.get("trace_key"): r.get("trace_meta", {}) for r in finished}
    ns3_s = sum(float(meta.get("setup_seconds", 0.0)) + float(meta.get("simulate_seconds", 0.0))
                for meta in traces.values() if meta.get("link_model") == "ns3")
    dates = sorted(r["finished_utc"] for r in finished if "finished_utc" in r)
    missing = len(records) - len(finished)
    return "\n".join([
        f"- **Regenerate:** `make {target}` (a second call recomputes nothing and rewrites these tables).",
        f"- **Commit:** {runs_commits(finished)}; **runs finished:** "
        + (f"{dates[0]} to {dates[-1]}" if len(set(dates)) > 1 else dates[-1] if dates else "none yet")
        + " (UTC).",
        f"- **Machine:** {runs_machines(finished)}.",
        f"- **Simulator:** {simulators(traces.values())} (the fingerprint of the code that made the link traces).",
        f"- **Wall time:** {ns3_s / 60:.1f} min of ns-3 making {len(traces)} link traces (those shared by "
        f"several runs counted once; control traces take well under a second) and {wall / 60:.1f} min summed "
        f"over {len(finished)} runs' own wall times (parallel workers overlap them).",
        f"- **Seeds:** {sweep_seeds(sweeps)}; each table's means and 95 % t intervals are over its own sweep's seeds."
        + (f" **{missing} run(s) missing or failed.**" if missing else ""),
    ])


def sweep_seeds(sweeps: list[Sweep]) -> str:
    """'time-table 1, 2, 3, 4, 5; time-tuning 0': each sweep's seeds (a tuning sweep's are not the tables')."""
    return "; ".join(f"{sweep.name} {', '.join(map(str, sorted({config.seed for _, config in sweep.runs})))}"
                     for sweep in sweeps)


def runs_commits(records: list[dict]) -> str:
    """The commits the runs record (their code fingerprints where a run predates commit records)."""
    commits = sorted({r.get("code_commit") or f"fingerprint {r.get('code_fingerprint')}" for r in records})
    return ", ".join(commits) if commits else "no runs"


def simulators(metas) -> str:
    """The simulator fingerprints the runs' traces record (``bridge.identity``)."""
    found = sorted({str(meta.get("simulator")) for meta in metas if isinstance(meta, dict) and meta.get("simulator")})
    return ", ".join(found) if found else "not recorded by these traces"


def runs_machines(records: list[dict]) -> str:
    """The machines the runs record: cores, CPU and the range of their single-thread matmul speed."""
    machines = [r["machine"] for r in records if isinstance(r.get("machine"), dict)]
    if not machines:
        return "not recorded by these runs"
    kinds = sorted({f"{m.get('cores')} cores, {m.get('cpu')}" for m in machines})
    speeds = sorted(float(m.get("matmul_gflops", "nan")) for m in machines)
    speed = f"{speeds[0]:.1f}" if speeds[0] == speeds[-1] else f"{speeds[0]:.1f}-{speeds[-1]:.1f}"
    return f"{'; '.join(kinds)}; 1024² matmul {speed} GFLOP/s on one thread (runs compute single-threaded)"


def measured_block(sweeps: list[Sweep], extras: list[Path], results_root: Path, target: str,
                   sweep_tables: bool = True) -> str:
    parts = [BEGIN, "", stamp(sweeps, results_root, target), ""]
    for sweep in sweeps if sweep_tables else []:
        out = sweep.summary_dir(results_root)
        if not (out / "table.md").exists():
            write_summary(sweep, results_root)
        parts += [f"#### Sweep `{sweep.name}` (target accuracy {sweep.target_accuracy:g}; "
                  f"`results/sweeps/{sweep.name}/`)", "", (out / "table.md").read_text().strip(), ""]
    for extra in extras:
        if extra.exists():
            parts += [f"#### `{extra.name}`", "", extra.read_text().strip(), ""]
    return "\n".join(parts + [END])


# Always in a per-seed CSV: the run, its setting's main fields (whatever varies), its seed and figures.
PER_SEED = ("run_id", "sweep", "algorithm.name", "algorithm.lr", "network.schedule", "network.link_model",
            "network.compute_model", "network.radio_sleep", "devices", "network.density", "data.alpha",
            "data.batch_size", "model.name", "seed", "status", "max_acc", "final_acc", "conv_rounds",
            "steps_to_target", "time_to_target_s", "energy_to_target_j", "energy_j", "bytes_sent",
            "code_fingerprint")
FIGURES_FROM = "run_id"  # the summary's columns before this one are the resolved config's fields


def per_seed_table(sweeps: list[Sweep], results_root: Path) -> str:
    """The runs behind a report, one row per run, small, kept beside it: ``PER_SEED`` and every other config
    field whose value differs between the report's runs (the setting columns after the main ones), so each row
    maps back to its config without rebuilding the code that made it."""
    from experiments.run.run_outputs import CSV_FLOAT_FORMAT
    from experiments.run.sweep import collect

    frames = [collect(sweep, results_root).assign(sweep=sweep.name) for sweep in sweeps]
    runs = pd.concat(frames, ignore_index=True).drop_duplicates("run_id")
    config_fields = list(runs.columns[:list(runs.columns).index(FIGURES_FROM)]) if FIGURES_FROM in runs else []
    differing = [field for field in config_fields if field not in PER_SEED and field != "name"
                 and runs[field].astype(str).nunique() > 1]
    columns = [column for column in PER_SEED if column in runs]
    columns[columns.index("seed"):columns.index("seed")] = differing
    return runs[columns].to_csv(index=False, float_format=CSV_FLOAT_FORMAT)


def per_seed_with(sweeps: list[Sweep], results_root: Path, columns: tuple[str, ...]) -> str:
    """``per_seed_table`` with every one of ``columns`` a campaign's rendering reads (config fields that do not
    vary, as rounds), those first in their order: a campaign's per-seed CSV (``robust_table``,
    ``energy_table``)."""
    from experiments.run.run_outputs import CSV_FLOAT_FORMAT
    from experiments.run.sweep import collect

    generic = pd.read_csv(io.StringIO(per_seed_table(sweeps, results_root)))
    fields = pd.concat([collect(sweep, results_root) for sweep in sweeps], ignore_index=True).drop_duplicates("run_id")
    extra = [column for column in columns if column not in generic and column in fields and column != "run_id"]
    runs = generic.merge(fields[["run_id", *extra]], on="run_id", how="left")
    order = [*[c for c in columns if c in runs], *[c for c in runs if c not in columns]]
    return runs[order].to_csv(index=False, float_format=CSV_FLOAT_FORMAT)


def update_report(name: str, sweeps: list[Sweep], extras: list[Path], results_root: Path, target: str,
                  sweep_tables: bool = True, per_seed: str | None = None) -> Path:
    """Rewrite the report's measured block and its per-seed CSV (``per_seed``: a campaign's own, with the
    columns its rendering reads; by default ``per_seed_table``)."""
    path = REPORTS / f"{name}.md"
    text = path.read_text() if path.exists() else f"# {name}\n"
    block = measured_block(sweeps, extras, results_root, target, sweep_tables)
    block = block.replace(END, f"Per-seed figures of every run: [{name}-runs.csv]({name}-runs.csv).\n\n{END}")
    write_atomically(REPORTS / f"{name}-runs.csv", per_seed if per_seed is not None else
                     per_seed_table(sweeps, results_root))
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Measured\n\n" + block + "\n"
    write_atomically(path, text)
    return path


def campaign_main(argv: list[str] | None, campaign: str, description: str, default_target: str,
                  runs_table: Callable, render: Callable, check: Callable) -> int:
    """The command of a campaign whose text is rendered from its per-seed runs table (``async_table``,
    ``robust_table``): the tunings' runs (``--tuning``: nsdml tune folders) and the evaluation sweeps' into one
    CSV (``runs_table(sweeps, results)``), the rates checked (``check``, exit 2 naming the field), the text
    rendered from the CSV as written (``render(runs, target)``), so the committed CSV re-renders the committed
    text; with ``--report`` the report's measured block and its per-seed CSV."""
    from experiments.analysis.tuning import TuningError

    table = f"{campaign}.md"  # the campaign module's name: robust_table -> robust_table.md, robust-runs.csv
    runs_csv = f"{campaign.removesuffix('_table')}-runs.csv"
    prog = f"python -m experiments.campaigns.{campaign}"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("sweeps", type=Path, nargs="+", help="the evaluation sweeps")
    parser.add_argument("--tuning", type=Path, action="append", default=[],
                        help="an nsdml tune folder (results/tune/<name>) whose tuning.toml lists its runs")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--report", default=None, help="also write experiments/reports/<REPORT>.md and its runs CSV")
    parser.add_argument("--target", default=default_target, help="the make target named in the report's stamp")
    args = parser.parse_args(argv)
    sweeps = [load_sweep(folder / "tuning.toml") for folder in args.tuning] + [load_sweep(p) for p in args.sweeps]
    csv_text = runs_table(sweeps, args.results)
    runs = pd.read_csv(io.StringIO(csv_text))
    try:
        check(runs)
    except TuningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = sweeps[len(args.tuning)].summary_dir(args.results)
    write_atomically(out / table, render(runs, sweeps[-1].target_accuracy))
    write_atomically(out / runs_csv, csv_text)
    print(f"written: {out}/{table}, {runs_csv}", file=sys.stderr)
    if args.report:
        if code_commit().endswith(DIRTY):
            print("error: the work tree has uncommitted changes to tracked files: commit them before writing the "
                  "report (its stamp names the commits the runs record)", file=sys.stderr)
            return 2
        path = update_report(args.report, sweeps, [out / table], args.results, args.target,
                             sweep_tables=False, per_seed=csv_text)
        print(f"report written: {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.campaigns.report", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the report: experiments/reports/<name>.md")
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep files whose tables it holds")
    parser.add_argument("--extra", action="append", default=[], type=Path, help="another table (.md) to include")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--target", default=None, help="the make target that regenerates it")
    parser.add_argument("--extra-only", action="store_true",
                        help="show only the --extra tables (the sweeps still give the stamp)")
    parser.add_argument("--allow-modified", action="store_true",
                        help="write the report although tracked files differ from HEAD (its runs' commits say so)")
    args = parser.parse_args(argv)
    if code_commit().endswith(DIRTY) and not args.allow_modified:
        print("report: the work tree has uncommitted changes to tracked files: commit them first, or pass "
              "--allow-modified (the stamp names the commits the runs record)", file=sys.stderr)
        return 2
    try:
        sweeps = [load_sweep(path) for path in args.sweeps]
    except ConfigError as error:
        print(f"report: config error: {error}", file=sys.stderr)
        return 2
    path = update_report(args.name, sweeps, args.extra, args.results, args.target or f"report-{args.name}",
                         sweep_tables=not args.extra_only)
    print(f"report written: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
