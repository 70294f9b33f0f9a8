"""What identifies the code that produced a run, so a finished run is reused only by the same code.

A run's fingerprint hashes the source of everything that decides its numbers:
the run loop, config and run-file code (``experiments/run/runner.py``,
``config.py``, ``run_writer.py``, ``energy.py``, ``compute.py``, ``async_loop.py``, this file), the bridge and the ns-3
scenarios, the learner's shared parts (devices, models, data, plugins, the
algorithm interface and registry), **its own algorithm's module and the
learner modules that module imports** (found by reading its imports, so
editing another algorithm, or a kernel this one does not use, leaves the run
valid), any plugin file the run loads, and the versions of torch, numpy and
ns3. Tables, plots, sweeps' bookkeeping and benches are left out: changing
them does not change a run's CSVs.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULT_PACKAGES = ("bridge", "ns3_scenarios", "messages")
RESULT_MODULES = ("experiments/run/runner.py", "experiments/config.py", "experiments/run/run_writer.py",
                  "experiments/run/energy.py", "experiments/run/fingerprint.py", "experiments/run/contract.py",
                  "experiments/run/checkpoint.py", "experiments/run/compute.py", "experiments/run/async_loop.py")
LEARNER_SHARED = ("learner/__init__.py", "learner/devices.py", "learner/models.py", "learner/data.py",
                  "learner/plugins.py", "learner/allocator.py", "learner/download.py", "learner/byzantine.py",
                  "learner/algorithms/__init__.py", "learner/algorithms/base.py",
                  "learner/algorithms/registry.py")
NOT_RESULT_CODE = ("bench.py",)  # measures speed, never touches a run
LIBRARIES = ("torch", "numpy", "ns3")


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def learner_dependencies(module_file: Path) -> set[Path]:
    """``module_file`` and the learner modules it imports, transitively (read from its import statements)."""
    found, pending = set(), [module_file]
    while pending:
        path = pending.pop()
        if path in found:
            continue
        found.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("learner.") and (target := _module_file(name)) is not None:
                    pending.append(target)
    return found


def result_sources(algorithm_module: str | None = None) -> list[Path]:
    """The files whose source decides a run's numbers; with ``algorithm_module`` (e.g.
    ``learner.algorithms.dpsgd``) only that algorithm's learner code, else every algorithm's."""
    sources = {ROOT / module for module in (*RESULT_MODULES, *LEARNER_SHARED)}
    for package in RESULT_PACKAGES:
        sources |= {path for path in (ROOT / package).rglob("*") if path.suffix in (".py", ".h")
                    and path.name not in NOT_RESULT_CODE and "__pycache__" not in path.parts}
    own = _module_file(algorithm_module) if algorithm_module and algorithm_module.startswith("learner.") else None
    if own is not None:
        sources |= learner_dependencies(own)
    else:
        sources |= {p for p in (ROOT / "learner").rglob("*.py") if "__pycache__" not in p.parts}
    return sorted(sources)


def code_fingerprint(algorithm_module: str | None = None, *extra_sources: str) -> str:
    """16 hex digits over the result code, ``extra_sources`` (plugin files, a compute CSV) and the library
    versions. Cached per process while the extra files keep their size and modification time, so a file edited
    between two runs of one process (a sweep) is read again."""
    versions = tuple((path, *_stamp(path)) for path in extra_sources)
    return _code_fingerprint(algorithm_module, versions)


def _stamp(path: str) -> tuple[int, int]:
    try:
        info = Path(path).stat()
    except OSError:
        return (-1, -1)
    return (info.st_mtime_ns, info.st_size)


@lru_cache(maxsize=None)
def _code_fingerprint(algorithm_module: str | None, extra_sources: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path in [*result_sources(algorithm_module), *(Path(source) for source, *_ in extra_sources)]:
        name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for library in LIBRARIES:
        try:
            version = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}=={version}\0".encode())
    return digest.hexdigest()[:16]


def run_fingerprint(config) -> str:
    """The fingerprint of the code a run of ``config`` executes (its algorithm's module and its plugins)."""
    return code_fingerprint(type(config.algorithm.instance).__module__, *config.plugin_sources)
