"""The ``nsdml`` command line.

    nsdml run CONFIG.toml  [--set FIELD=VALUE ...] [--results DIR] [--cache DIR]   one run -> results/<run-id>/
    nsdml sweep SWEEP.toml [--set ...] [--workers N] [--ray-address A]           every missing run, then the summary
    nsdml table SWEEP.toml [--results DIR]            summary, tables and plots from the CSVs only
    nsdml algorithms                                  every algorithm, its paper, hyperparameters and ranges
    nsdml show RUN_DIR...                             a run's config, status, final metrics and files;
                                                      several runs or a sweep directory: one line each
    nsdml compare RUN_OR_SWEEP... [--target ACC]      runs on shared axes (rounds, seconds, joules) and a table
    nsdml ls [--results DIR] [--where FIELD=VALUE]    every run, one line each, found by its settings
    nsdml tune CONFIG --algorithms A,B --seeds S,T [--target ACC]   each lr chosen on held-out seeds (grid widened
                                                      until interior); writes overrides.toml and tuned.toml
    nsdml tensorboard RUN_OR_SWEEP... [--out DIR]     runs as TensorBoard event files (scalars, hparams)
    nsdml plot SWEEP_DIR --x FIELD [--y METRIC] [--hue F] [--style F] [--col F] [--row F] [--where F=V]
               [--format png|pdf|svg]                one figure; every varying field on an axis or refused

A finished run is reused when the same code made it (run.json's code fingerprint);
a second process asking for a run in progress waits for it.

Exit codes: 0 done, 1 a run failed (e.g. the ns-3 worker died, out of memory),
2 bad input (the message names the field and what is allowed; nothing is written),
130 interrupted (finished runs are kept; the same command completes the rest; a run with
checkpoints resumes from its last one), 141 the reader of the output went away (``| head``).
An algorithm that breaks its contract (raises, or returns the wrong shape) fails its run with one
line naming the method and what the contract wants; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from experiments.run import interrupts

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command whose reader went away


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nsdml", description="Decentralized learning over simulated 802.11a links.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run one config and write results/<run-id>/"),
                       ("sweep", "run every missing run of a sweep file, then write its summary"),
                       ("table", "rebuild a sweep's summary, tables and plots from the run CSVs")):
        command = commands.add_parser(name, help=text)
        command.add_argument("config", type=Path, help="TOML run config" if name == "run" else "TOML sweep file")
        command.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                             help="override a field, e.g. --set network.density=0.8 (a TOML value; bare words are "
                                  "strings); validated like the file and part of the run id; repeatable")
        command.add_argument("--results", type=Path, default=Path("results"), help="results root (default: results)")
        command.add_argument("--cache", type=Path, default=Path(os.environ.get("NSDML_CACHE_DIR", ".cache/traces")),
                             help="link-trace cache (default: $NSDML_CACHE_DIR or .cache/traces)")
        command.add_argument("-q", "--quiet", action="store_true",
                             help="no progress bars and no info lines on stderr (warnings and recomputes still; "
                                  "run.log keeps all)")
        command.add_argument("-v", "--verbose", action="store_true",
                             help="one line per round too, on stderr and in each run's run.log")
        command.add_argument("--debug", action="store_true",
                             help="print the traceback of a failure (e.g. inside an algorithm plugin)")
        if name == "sweep":
            command.add_argument("--workers", type=int, default=None,
                                 help="local processes running runs in parallel (default: the CPU cores)")
            command.add_argument("--ray-address", default=None,
                                 help="run the runs as Ray tasks on this cluster ('auto' = the local one)")
            command.add_argument("--traces-only", action="store_true",
                                 help="only simulate (or find cached) the link traces the runs need, then stop")
    tune = commands.add_parser("tune", help="choose each algorithm's lr on held-out seeds by the project's rule")
    tune.add_argument("config", type=Path, help="TOML run config or sweep file (its settings are averaged over)")
    tune.add_argument("--algorithms", required=True, help="comma-separated, e.g. dpsgd,hyperprism")
    tune.add_argument("--seeds", required=True, help="comma-separated tuning seeds, none of them reported, e.g. 900,901")
    tune.add_argument("--target", type=float, default=None,
                      help="accuracy to count rounds to (default: the sweep's target_accuracy)")
    tune.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                      help="override a field of the config, as for run and sweep")
    tune.add_argument("--results", type=Path, default=Path("results"), help="results root (default: results)")
    tune.add_argument("--cache", type=Path, default=Path(os.environ.get("NSDML_CACHE_DIR", ".cache/traces")),
                      help="link-trace cache (default: $NSDML_CACHE_DIR or .cache/traces)")
    tune.add_argument("--workers", type=int, default=None, help="local processes (default: the CPU cores)")
    tune.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands.add_parser("algorithms", help="list every algorithm, its paper and its hyperparameters")
    listing = commands.add_parser("ls", help="every run under a results root, one line each, found by its settings")
    listing.add_argument("--results", type=Path, default=Path("results"), help="results root (default: results)")
    listing.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                         help="only runs whose resolved config has FIELD at VALUE, e.g. algorithm.name=dpsgd; "
                              "repeatable (all must hold)")
    show = commands.add_parser("show", help="a run's config, status, final metrics and files; several runs or a "
                                            "sweep directory: one line each")
    show.add_argument("run_dir", type=Path, nargs="+", help="results/<run-id>/ or results/sweeps/<name>/")
    plot = commands.add_parser("plot", help="one figure of a sweep's runs: x, y, and every varying field on an axis")
    plot.add_argument("sweep", type=Path, help="results/sweeps/<name>/ (or the sweep's TOML file, with --results)")
    plot.add_argument("--x", required=True, help="a config field (network.density, algorithm.lr, ...) for points, "
                                                 "or a clock (round, local_steps, sim_time_s, cumulative_energy_j) "
                                                 "for curves")
    plot.add_argument("--y", default=None, help="a summary.csv figure for points (default final_acc), a metrics.csv "
                                                "column for curves (default mean_accuracy)")
    for role, text in (("hue", "colour"), ("style", "line style"), ("col", "panel columns"), ("row", "panel rows")):
        plot.add_argument(f"--{role}", default=None, metavar="FIELD", help=f"the config field setting the {text}")
    plot.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                      help="plot only the runs with FIELD at VALUE (fixes a varying field); repeatable")
    plot.add_argument("--format", choices=("png", "pdf", "svg"), default="png")
    plot.add_argument("--out", type=Path, default=None, help="the figure's path (default: in the sweep directory)")
    plot.add_argument("--results", type=Path, default=Path("results"), help="results root, for a TOML sweep file")
    board = commands.add_parser("tensorboard", help="finished runs (or sweeps) as TensorBoard event files")
    board.add_argument("paths", type=Path, nargs="+", help="results/<run-id>/ or results/sweeps/<name>/")
    board.add_argument("--out", type=Path, default=Path("results/tensorboard"),
                       help="log directory, one subdirectory per run (default: results/tensorboard)")
    compare = commands.add_parser("compare", help="several runs (or sweeps) on shared axes, with a table")
    compare.add_argument("paths", type=Path, nargs="+", help="results/<run-id>/ or results/sweeps/<name>/")
    compare.add_argument("--target", type=float, default=None,
                         help="accuracy whose rounds, seconds and joules to reach are tabled, e.g. 0.8 "
                              "(left out: the curves and final figures only)")
    compare.add_argument("--out", type=Path, default=None,
                         help="where compare.png, .csv and .md go (default: <results>/compare/<hash>/)")
    return parser


def _load(args: argparse.Namespace):
    from experiments.config import apply_overrides, parse_config, read_toml
    from experiments.run.sweep import expand_sweep

    kind = "config" if args.command == "run" else "sweep"
    raw = apply_overrides(read_toml(args.config, kind=kind), args.overrides)
    return parse_config(raw) if args.command == "run" else expand_sweep(raw, default_name=args.config.stem)


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so a reader that went away (`| head`) is noticed inside the guard
        return code
    except KeyboardInterrupt:  # outside the command's own watch: while parsing, or printing the report
        return _interrupted()
    except BrokenPipeError:
        # The reader closed the pipe: say nothing more, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "algorithms":
        from experiments.analysis.catalog import describe_algorithms

        print(describe_algorithms())
        return 0
    if args.command == "ls":
        return _list(args)
    if args.command == "show":
        from experiments.analysis.show import show_runs

        return show_runs(args.run_dir)
    if args.command == "compare":
        return _compare(args)
    if args.command == "plot":
        return _plot(args)
    if args.command == "tune":
        return _tune(args)
    if args.command == "tensorboard":
        return _tensorboard(args)
    # Imported here, not at the top: importing it loads torch (about a second), and a Ctrl-C meanwhile is
    # then main's to report like any other, not a traceback from an import.
    from experiments.config import ConfigError

    try:
        loaded = _load(args)
    except ConfigError as error:
        print(f"nsdml: config error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from bridge import WorkerError  # imported after validation: a bad config exits fast
    from experiments.run.contract import PluginFailure
    from experiments.run.execution import default_workers
    from experiments.run.runner import RunFailed, TraceCacheError, run_experiment
    from learner.download import DownloadError
    from experiments.run.sweep import make_traces, run_sweep, sweep_traces, write_summary

    try:
        with interrupts.watch(), _verbosity(args):
            if args.command == "run":
                echo = _warnings_only if args.quiet else (lambda message: print(message, file=sys.stderr))
                return _report_run(run_experiment(loaded, args.results, args.cache, log=echo,
                                                  progress=not args.quiet), loaded)
            if args.command == "sweep":
                workers = args.workers if args.workers is not None else default_workers()
                if workers < 1:
                    print(f"nsdml: --workers: {workers} is not allowed; expected an integer >= 1", file=sys.stderr)
                    return EXIT_BAD_INPUT
                if args.ray_address and importlib.util.find_spec("ray") is None:
                    print("nsdml: --ray-address: Ray is not installed; it is an extra: pip install -e '.[ray]' "
                          "(or make setup EXTRAS=\"ray\")", file=sys.stderr)
                    return EXIT_BAD_INPUT
                if args.traces_only:
                    needed = sweep_traces(loaded)
                    failed = make_traces(loaded, needed, args.cache, workers, args.ray_address,
                                         log=lambda message: print(message, file=sys.stderr))
                    print(f"sweep {loaded.name}: {len(needed) - failed} of {len(needed)} link traces in {args.cache}")
                    return EXIT_FAILED if failed else 0
                summary = run_sweep(loaded, args.results, args.cache, workers=workers,
                                    ray_address=args.ray_address, quiet=args.quiet)
            else:
                summary = write_summary(loaded, args.results)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as error:
        if interrupts.seen():  # a library turned the Ctrl-C into its own error
            return _interrupted()
        if isinstance(error, ConfigError):  # a setting only the data can refute (e.g. more devices than samples)
            print(f"nsdml: config error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(error, (WorkerError, RunFailed, TraceCacheError, DownloadError, PluginFailure)):
            if args.debug:
                traceback.print_exception(error)
            print(f"nsdml: {error}", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(error, OSError):
            print(f"nsdml: cannot write results under {args.results}: {error.strerror or error} "
                  f"({error.filename or args.results})", file=sys.stderr)
            return EXIT_FAILED
        raise
    return _report_sweep(loaded, summary, args.results)


def _warnings_only(message: str) -> None:
    from experiments.run.run_log import is_notice

    if is_notice(message):
        print(message, file=sys.stderr)


@contextmanager
def _verbosity(args: argparse.Namespace):
    """-v: runs log a DEBUG line per round (run.log, in this process and in a sweep's workers, which inherit
    the variable) and this process prints those lines on stderr; undone when the command ends."""
    if not getattr(args, "verbose", False):
        yield
        return
    import logging

    from experiments.run.run_log import LEVEL_VARIABLE, RUN_LOGGER

    before = os.environ.get(LEVEL_VARIABLE)
    os.environ[LEVEL_VARIABLE] = "DEBUG"
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(lambda record: record.levelno == logging.DEBUG)  # info lines are printed already
    handler.setFormatter(logging.Formatter("[nsdml] %(message)s"))
    RUN_LOGGER.addHandler(handler)
    try:
        yield
    finally:
        RUN_LOGGER.removeHandler(handler)
        if before is None:
            os.environ.pop(LEVEL_VARIABLE, None)
        else:
            os.environ[LEVEL_VARIABLE] = before


def _list(args: argparse.Namespace) -> int:
    from experiments.analysis.listing import WhereError, list_runs, parse_where

    try:
        lines = list_runs(args.results, parse_where(args.where))
    except WhereError as error:
        print(f"nsdml: ls: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join(lines) if lines else f"no run under {args.results}"
          + (" with " + ", ".join(args.where) if args.where else ""))
    return 0


def _tensorboard(args: argparse.Namespace) -> int:
    from experiments.analysis.compare import CompareError
    from experiments.analysis.tensorboard import export

    try:
        written = export(args.paths, args.out)
    except CompareError as error:
        print(f"nsdml: tensorboard: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"nsdml: tensorboard: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{len(written)} runs exported to {args.out}/; view them with `tensorboard --logdir {args.out}`")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from experiments.config import ConfigError, apply_overrides, read_toml
    from experiments.run.execution import default_workers
    from experiments.run.tune import tune

    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        print(f"nsdml: tune: --seeds: {args.seeds!r} is not allowed; expected integers, e.g. 900,901",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.target is not None and not 0.0 < args.target <= 1.0:
        print(f"nsdml: tune: --target: {args.target} is not allowed; expected an accuracy in (0, 1]", file=sys.stderr)
        return EXIT_BAD_INPUT
    workers = args.workers if args.workers is not None else default_workers()
    try:
        with interrupts.watch():
            raw = apply_overrides(read_toml(args.config, kind="config"), args.overrides)
            tuned = tune(raw, [a.strip() for a in args.algorithms.split(",") if a.strip()], seeds, args.target,
                         args.results, args.cache, workers=workers, quiet=args.quiet,
                         log=lambda message: print(message, file=sys.stderr))
    except KeyboardInterrupt:
        return _interrupted()
    except ConfigError as error:
        print(f"nsdml: tune: config error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print((tuned.out_dir / "tuning.md").read_text(), end="")
    print(f"tuning in {tuned.out_dir}/ ({_listing(tuned.out_dir)}); run the tuned sweep with "
          f"`nsdml sweep {tuned.out_dir / 'tuned.toml'}`")
    return 0


def _plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from experiments.analysis.figures import CLOCKS, PlotError, plot_figure
    from experiments.analysis.listing import WhereError, matches, parse_where

    sweep_dir = args.sweep
    if sweep_dir.suffix == ".toml" and sweep_dir.is_file():
        import tomllib
        try:
            name = tomllib.loads(sweep_dir.read_text()).get("sweep", {}).get("name", sweep_dir.stem)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError) as error:
            print(f"nsdml: plot: {sweep_dir}: not a sweep file ({error})", file=sys.stderr)
            return EXIT_BAD_INPUT
        sweep_dir = args.results / "sweeps" / str(name)
    if not (sweep_dir / "summary.csv").is_file():
        print(f"nsdml: plot: {args.sweep}: no summary.csv there; give results/sweeps/<name>/ of a swept sweep "
              f"(`nsdml sweep` or `nsdml table` writes it)", file=sys.stderr)
        return EXIT_BAD_INPUT
    y = args.y or ("mean_accuracy" if args.x in CLOCKS else "final_acc")
    try:
        summary = pd.read_csv(sweep_dir / "summary.csv")
        for field, value in parse_where(args.where).items():
            if field not in summary:
                raise WhereError(f"--where: {field!r} is not a column of {sweep_dir / 'summary.csv'}")
            summary = summary[[matches(v, value) for v in summary[field]]]
        by = "".join(f"_by_{f.rsplit('.', 1)[-1]}" for f in (args.hue, args.style, args.col, args.row) if f)
        default = sweep_dir / f"{y}_vs_{args.x.rsplit('.', 1)[-1]}{by}.{args.format}"
        out = plot_figure(summary, sweep_dir.parent.parent, args.out or default,
                          args.x, y, hue=args.hue, style=args.style, col=args.col, row=args.row)
    except (PlotError, WhereError) as error:
        print(f"nsdml: plot: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"nsdml: plot: cannot write {args.out or sweep_dir}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"figure in {out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from experiments.analysis.compare import CompareError, compare

    if args.target is not None and not 0.0 < args.target <= 1.0:
        print(f"nsdml: compare: --target: {args.target} is not allowed; expected an accuracy in (0, 1]",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        out, table = compare(args.paths, args.target, args.out)
    except CompareError as error:
        print(f"nsdml: compare: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"nsdml: compare: cannot write {args.out or 'the comparison'}: {error.strerror or error}",
              file=sys.stderr)
        return EXIT_FAILED
    print((out / "compare.md").read_text(), end="")
    print(f"{len(table)} runs compared in {out}/ ({_listing(out)})")
    return 0


def _listing(directory: Path) -> str:
    """The files a command wrote into ``directory``, as they are (not a list kept by hand)."""
    return ", ".join(sorted(path.name for path in Path(directory).iterdir()
                            if path.is_file() and not path.name.startswith(".")))


def _interrupted() -> int:
    print("nsdml: interrupted; finished runs are kept, run the same command again to complete the rest",
          file=sys.stderr)
    return EXIT_INTERRUPTED


def _report_run(result, config) -> int:
    from messages.schedules import SCHEDULES

    how = "reused (finished earlier by the same code)" if result.run_reused else result.status
    # Under the asynchronous schedule there are no rounds: `rounds` counts evaluation periods of the clock.
    unit = ("evaluation periods (rounds = periods of the median device's loop, at least async_period_s)"
            if SCHEDULES[config.network.schedule].algorithm_kind == "asynchronous" else "rounds")
    print(f"run {config.run_id}: {how} after {len(result.metrics) - 1} {unit}; "
          f"final mean test accuracy {result.final_accuracy:.4f}")
    print(f"results in {result.run_dir}/ ({_listing(result.run_dir)})")
    return 0


def _report_sweep(sweep, summary, results_root: Path) -> int:
    out = sweep.summary_dir(results_root)
    counts = summary["status"].value_counts().to_dict()
    print(f"sweep {sweep.name}: {len(summary)} runs {counts}")
    if "damaged_because" in summary:
        for _, row in summary[summary["status"] == "damaged"].iterrows():
            print(f"nsdml: warning: run {row['run_id']} is left out of the table: {row['damaged_because']}; "
                  f"`nsdml sweep` recomputes it", file=sys.stderr)
    for field, values in summary.attrs.get("unswept", {}).items():
        print(f"nsdml: warning: {field} differs between the compared runs without being swept ({values}); "
              f"sweep it or set it equal to compare like with like", file=sys.stderr)
    for line in summary.attrs.get("figures_left_out", []):
        print(f"nsdml: note: figure left out: {line}", file=sys.stderr)
    recomputed = summary.attrs.get("recomputed")
    if recomputed:
        print("recomputed " + "; ".join(f"{count} finished run(s): {reason}" for reason, count in recomputed.items()))
    print(f"summary in {out}/ ({_listing(out)})")
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
