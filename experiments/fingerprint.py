"""What identifies the code that produced a run, so a finished run is reused only by the same code.

The fingerprint hashes the source of everything that decides a run's numbers
(the learner, the bridge, the ns-3 scenarios, the run loop, the config and
run-file code, and any plugin module the run loads) together with the
versions of the numeric libraries. Tables, plots, sweeps' bookkeeping and
benches are left out: changing them does not change a run's CSVs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT_PACKAGES = ("learner", "bridge", "ns3_scenarios")
RESULT_MODULES = ("experiments/runner.py", "experiments/config.py", "experiments/run_writer.py",
                  "experiments/fingerprint.py")
NOT_RESULT_CODE = ("bench.py",)  # measures speed, never touches a run
LIBRARIES = ("torch", "numpy", "ns3")


def result_sources() -> list[Path]:
    sources = [ROOT / module for module in RESULT_MODULES]
    for package in RESULT_PACKAGES:
        sources += [path for path in (ROOT / package).rglob("*") if path.suffix in (".py", ".h")
                    and path.name not in NOT_RESULT_CODE and "__pycache__" not in path.parts]
    return sorted(sources)


@lru_cache(maxsize=None)
def code_fingerprint(*extra_sources: str) -> str:
    """16 hex digits over the result code, ``extra_sources`` (plugin files) and the library versions."""
    digest = hashlib.sha256()
    for path in [*result_sources(), *map(Path, extra_sources)]:
        name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for library in LIBRARIES:
        try:
            version = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}=={version}\0".encode())
    return digest.hexdigest()[:16]
