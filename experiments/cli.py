"""The ``nsdml`` command line.

    nsdml run CONFIG.toml [--results DIR] [--cache DIR]

Exit codes: 0 done, 1 the run failed (e.g. the ns-3 worker died),
2 bad input (the message names the field and what is allowed; nothing is written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from experiments.config import ConfigError, load_config

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nsdml", description="Decentralized learning over simulated 802.11a links.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one config and write results/<run-id>/")
    run.add_argument("config", type=Path, help="TOML run config")
    run.add_argument("--results", type=Path, default=Path("results"), help="results root (default: results)")
    run.add_argument("--cache", type=Path, default=Path(os.environ.get("NSDML_CACHE_DIR", ".cache/traces")),
                     help="link-trace cache (default: $NSDML_CACHE_DIR or .cache/traces)")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"nsdml: config error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from bridge import WorkerError  # imported after validation: a bad config exits fast
    from experiments.runner import run_experiment

    try:
        result = run_experiment(config, args.results, args.cache)
    except WorkerError as error:
        print(f"nsdml: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"run {config.run_id}: {result.status} after {len(result.metrics) - 1} rounds; "
          f"final mean test accuracy {result.final_accuracy:.4f}")
    print(f"results in {result.run_dir}/ (config.toml, metrics.csv, links.csv, devices.csv, accuracy.png, run.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
