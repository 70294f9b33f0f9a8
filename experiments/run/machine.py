"""Where and by what code a run was made: the git commit and the machine, recorded in its run.json.

``code_commit()`` is HEAD's short hash, marked "+ uncommitted changes" when
tracked files differ from it ("unknown" outside a git checkout);
``machine_record()`` names the host, the cores, the CPU model and the speed of
one single-threaded 1024² float32 matmul (GFLOP/s; runs compute
single-threaded), measured once per process. A report's stamp is drawn from
these records of its runs (``experiments.campaigns.report``), not from the machine that
writes the report.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[2]
DIRTY = " + uncommitted changes"


def median_seconds(action: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_flops_per_s(size: int = 1024) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats=5)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_commit() -> str:
    """HEAD's short hash, marked when tracked files have uncommitted changes."""
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (DIRTY if _git("status", "--porcelain", "--untracked-files=no") else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@lru_cache(maxsize=1)
def machine_record() -> dict:
    """Host, cores, CPU and single-thread matmul speed of this process's machine (measured once)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gflops = matmul_flops_per_s() / 1e9
    finally:
        torch.set_num_threads(previous)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"host": platform.node(), "cores": cores, "cpu": _cpu_model(), "matmul_gflops": round(gflops, 1)}


def resident_mb() -> float:
    """This process's resident memory now (MB): /proc/self/statm on Linux, else the peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
