"""Small helpers shared by tests."""

from pathlib import Path


def run_dirs(results: Path) -> list[Path]:
    """The run directories under a results root (hidden entries such as ``.locks`` are not runs)."""
    return sorted(p for p in Path(results).iterdir() if p.is_dir() and not p.name.startswith("."))


def run_dir_of(results: Path, config_path: Path) -> Path:
    """The run directory ``nsdml run config_path`` writes under ``results`` (its id hashes the resolved config)."""
    from experiments.config import parse_config, read_toml

    return Path(results) / parse_config(read_toml(Path(config_path), kind="config")).run_id
