"""Small helpers shared by tests."""

from pathlib import Path


def run_dirs(results: Path) -> list[Path]:
    """The run directories under a results root (hidden entries such as ``.locks`` are not runs)."""
    return sorted(p for p in Path(results).iterdir() if p.is_dir() and not p.name.startswith("."))
