"""Where a sweep's tasks run: in this process, on a local process pool, or as Ray tasks.

The task functions are the same everywhere and take plain data (a config as
a dict, paths as strings), so a task means the same thing on a laptop pool
and on a Ray cluster. Each yields its result as soon as it finishes, so the
caller can record progress and failures as they come.
"""

from __future__ import annotations

import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from experiments.run import interrupts

Task = tuple[Callable[..., Any], tuple]


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def execute(tasks: list[Task], workers: int = 1, ray_address: str | None = None) -> Iterator[Any]:
    """Run ``fn(*args)`` for every task; yield results in completion order."""
    if not tasks:
        return iter(())
    if ray_address:
        return _interruptible(_on_ray(tasks, ray_address))
    if workers <= 1:
        return _interruptible(fn(*args) for fn, args in tasks)
    return _interruptible(_on_pool(tasks, workers))


def _interruptible(results: Iterator[Any]) -> Iterator[Any]:
    """Stop after the task during which a Ctrl-C was lost (experiments.run.interrupts)."""
    for result in results:
        interrupts.check()
        yield result


def _on_pool(tasks: list[Task], workers: int) -> Iterator[Any]:
    # spawn, not fork: forking a process that already runs torch's thread pools can deadlock.
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, *args) for fn, args in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _on_ray(tasks: list[Task], address: str) -> Iterator[Any]:
    import ray

    # The cluster's workers import nsdml as installed on their machines (`make setup` there).
    ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
    try:
        remote = {fn: ray.remote(num_cpus=1)(fn) for fn, _ in tasks}
        pending = [remote[fn].remote(*args) for fn, args in tasks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        ray.shutdown()


def trace_task(config_data: dict, cache_dir: str) -> tuple[str, str | None]:
    """Make (or find) the link trace a run needs. Returns (trace key, error or None)."""
    from bridge import obtain_trace, trace_key
    from experiments.config import parse_config
    from experiments.run.runner import single_threaded, trace_request

    config = parse_config(config_data)
    with single_threaded():
        request = trace_request(config)
    try:
        obtain_trace(**request, cache_dir=Path(cache_dir), timeout_s=config.network.worker_timeout_s)
        return trace_key(**request), None
    except Exception as error:  # reported per task; the sweep carries on
        return trace_key(**request), f"{type(error).__name__}: {error}"


def chunk_task(config_data: dict, cache_dir: str, chunk: int) -> tuple[str, str | None]:
    """Simulate chunk ``chunk`` of the ns-3 trace a run needs (``bridge.chunks``). Returns (label, error or None)."""
    from bridge.link_source import make_ns3_chunk, trace_key
    from experiments.config import parse_config
    from experiments.run.runner import single_threaded, trace_request

    config = parse_config(config_data)
    with single_threaded():
        request = trace_request(config)
    label = f"{trace_key(**request)} chunk {chunk}"
    try:
        make_ns3_chunk(request["scenario"], request["payload_bytes"], request["rounds"], request["seed"], chunk,
                       Path(cache_dir), timeout_s=config.network.worker_timeout_s)
        return label, None
    except Exception as error:  # reported per task; the sweep carries on (the join then fails for this trace)
        return label, f"{type(error).__name__}: {error}"


def run_task(config_data: dict, results_root: str, cache_dir: str) -> tuple[str, str, str | None]:
    """One run of a sweep. Returns (run id, status, error or None); never raises for a failed run."""
    from experiments.config import parse_config
    from experiments.run.runner import run_experiment

    config = parse_config(config_data)
    try:
        result = run_experiment(config, Path(results_root), Path(cache_dir), log=lambda message: None)
        return config.run_id, result.status, None
    except Exception:
        return config.run_id, "failed", traceback.format_exc(limit=8)


def unique_by(items: Iterable[Any], key: Callable[[Any], Any]) -> list[Any]:
    seen, kept = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            kept.append(item)
    return kept
