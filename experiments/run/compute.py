"""Heterogeneous devices: each device's simulated seconds per local step, from a declared distribution.

``network.compute_model`` says how the N step times are drawn, once per run
from its seed (a device keeps its speed for the whole run):

- ``constant``: every device takes ``compute_s_per_step``;
- ``lognormal``: lognormal with mean ``compute_s_per_step`` and log-space
  standard deviation ``compute_sigma`` (mu = ln(mean) - sigma^2 / 2);
- ``stragglers``: round(``straggler_fraction`` x N) devices, drawn at random,
  take ``straggler_slowdown`` times ``compute_s_per_step``, the others
  ``compute_s_per_step``;
- ``csv``: ``compute_csv`` names a CSV with a ``step_s`` column of N positive
  numbers, device 0 first (measured step times of real devices).

Under synchronous rounds a round's compute lasts as long as its slowest live
device's (``oracle calls`` x its step time): the others wait at the barrier.
Each device is charged ``compute_power_w`` x its own compute time.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

COMPUTE_MODELS = ("constant", "lognormal", "stragglers", "csv")
MAX_STEP_S = 3600.0  # as network.compute_s_per_step: an hour per local step at most


def csv_step_times(path: str, devices: int) -> np.ndarray:
    """The ``step_s`` column of ``path``: N positive numbers of at most ``MAX_STEP_S`` (ValueError naming what is
    wrong). Only a regular file is read: a FIFO or a device would block or never end."""
    if not Path(path).expanduser().is_file():
        raise ValueError(f"compute_csv: {path!r} is not a regular file")
    try:
        table = pd.read_csv(Path(path).expanduser())
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"compute_csv: cannot read {path!r} as CSV ({type(error).__name__})") from error
    if "step_s" not in table:
        raise ValueError(f"compute_csv: {path!r} has no step_s column (columns: {', '.join(map(str, table.columns))})")
    values = pd.to_numeric(table["step_s"], errors="coerce").to_numpy(dtype=float)
    if len(values) != devices or not np.isfinite(values).all() or (values <= 0).any() or (values > MAX_STEP_S).any():
        raise ValueError(f"compute_csv: {path!r} must give {devices} step times in (0, {MAX_STEP_S:g}] s in step_s, "
                         f"one per device; it has {len(values)}")
    return values


def step_times(network, devices: int, seed: int) -> np.ndarray:
    """(N,) simulated seconds of one local step on each device."""
    mean = network.compute_s_per_step
    rng = np.random.default_rng([seed, 0xC0DE])
    if network.compute_model == "lognormal":
        sigma = network.compute_sigma
        return rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, devices) if mean > 0 else np.zeros(devices)
    if network.compute_model == "stragglers":
        times = np.full(devices, mean)
        slow = rng.choice(devices, size=int(round(network.straggler_fraction * devices)), replace=False)
        times[slow] *= network.straggler_slowdown
        return times
    if network.compute_model == "csv":
        return csv_step_times(network.compute_csv, devices)
    return np.full(devices, mean)
