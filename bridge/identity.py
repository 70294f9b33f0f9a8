"""What a cached trace is: the code that made it, the inputs of its key, and a hash of its arrays.

A trace depends on the request (link model, scenario, payloads, rounds, seed, a schedule's plan) and on the
code that simulates it: ns-3's scenario (the C++ helper, the Python that builds and drives it, the worker),
the controls' and the ladder's models, the message core's schedules. ``simulator_fingerprint`` hashes that code,
so a changed simulator makes new traces; the learner, the runner and the analysis are not in it, so changing
them replays the traces already made. Each cache entry records its key's inputs and a SHA-256 of its arrays,
and a load checks both (``bridge.link_source``): an entry copied from another request, or edited, is made again.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The code that makes traces, relative to the repository root (directories: every .py and .h in them).
SIMULATOR_SOURCES = ("ns3_scenarios", "bridge/controls.py", "bridge/ladder.py", "bridge/messages.py",
                     "bridge/synthetic.py", "bridge/worker.py", "bridge/chunks.py", "messages/schedules.py",
                     "messages/network.py")


def simulator_files(root: Path = ROOT) -> list[Path]:
    files = []
    for name in SIMULATOR_SOURCES:
        path = root / name
        files += sorted(p for p in path.iterdir() if p.suffix in (".py", ".h")) if path.is_dir() else [path]
    return files


def simulator_fingerprint(root: Path = ROOT) -> str:
    """SHA-256 (first 16 hex digits) of the trace-making sources under ``root``, each by its relative path."""
    if root == ROOT:
        return _this_checkout()
    return _fingerprint(root)


@lru_cache(maxsize=1)
def _this_checkout() -> str:
    return _fingerprint(ROOT)


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for path in simulator_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of named arrays: each name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
