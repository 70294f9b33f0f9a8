"""``nsdml ls [--results DIR] [--where FIELD=VALUE ...]``: every run under a results root, found by its
settings, one line each: run id, status, the settings a reader looks for first, final accuracy.

A run is a directory holding ``config.toml`` (the resolved config: every field filled in), so ``--where``
can name any field by its dotted path (``algorithm.name=dpsgd``, ``network.density=0.5``, ``seed=1``); the
value is read as TOML (``0.5`` a number, ``true`` a boolean, a bare word a string). A run whose config
cannot be read is listed as such, never dropped silently.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from experiments.analysis.show import _short_final
from experiments.run.run_writer import run_status
from experiments.run.sweep import flatten

SHOWN = {"algorithm.name": "algorithm", "algorithm.lr": "lr", "network.link_model": "link model",
         "network.schedule": "schedule", "devices": "devices", "seed": "seed"}


class WhereError(ValueError):
    """A --where clause that is not FIELD=VALUE."""


def flat_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved config as dotted fields (None when config.toml is missing or not TOML)."""
    try:
        return flatten(tomllib.loads((run_dir / "config.toml").read_text()))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def parse_where(clauses: list[str]) -> dict[str, Any]:
    """``["network.density=0.5", ...]`` -> {field: value}; a value is read as TOML, else as a string."""
    wanted = {}
    for clause in clauses:
        field, sep, text = clause.partition("=")
        if not sep or not field.strip():
            raise WhereError(f"--where: {clause!r} is not FIELD=VALUE (e.g. algorithm.name=dpsgd)")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        wanted[field.strip()] = value
    return wanted


def matches(value: Any, wanted: Any) -> bool:
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)) and not isinstance(value, bool):
        return float(value) == float(wanted)
    return value == wanted


def list_runs(results: Path, where: dict[str, Any]) -> list[str]:
    """One line per run under ``results`` whose config has every ``where`` field at its value."""
    lines = []
    candidates = sorted(Path(results).iterdir()) if Path(results).is_dir() else []
    for run_dir in (p for p in candidates if p.is_dir() and ((p / "config.toml").exists() or (p / "run.json").exists())):
        config = flat_config(run_dir)
        if config is None:
            if not where:
                lines.append(f"{run_dir.name}: status {run_status(run_dir)}; config.toml cannot be read")
            continue
        if not all(field in config and matches(config[field], value) for field, value in where.items()):
            continue
        settings = ", ".join(f"{label} {config[field]}" for field, label in SHOWN.items() if field in config)
        final = _short_final(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else "no metrics.csv"
        lines.append(f"{run_dir.name}: {run_status(run_dir) or 'no run.json'}; {settings}; {final}")
    return lines
