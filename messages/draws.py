"""Draws keyed by (seed, device, step): the same number whoever asks and in whatever order.

A device's k-th draw must not depend on which other steps run beside it (the asynchronous engine batches
causally independent steps into levels; a per-event loop runs them one by one) nor on the link model: the
message core draws a pairwise partner with it when it simulates the log, the learner its merge choices."""

from __future__ import annotations

import numpy as np


def keyed_uniform(seed: int, device: np.ndarray, step: np.ndarray) -> np.ndarray:
    """U[0, 1) draws keyed by (seed, device, step) (splitmix64 of a linear mix of the three)."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.asarray(device).astype(np.uint64)
             * np.uint64(0x100000001B3) + np.asarray(step).astype(np.uint64) * np.uint64(0xD6E8FEB86659FD93))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


PARTNER_STREAM = 0x9A27  # offsets the step so a partner draw never equals the device's merge draw of that step


def partner_of(seed: int, device: int, step: int, neighbours: np.ndarray) -> int:
    """The neighbour ``device`` addresses at its ``step``-th pairwise exchange: uniform among the True entries
    of ``neighbours`` (N,), keyed by (seed, device, step); -1 when it has none."""
    candidates = np.flatnonzero(neighbours)
    if len(candidates) == 0:
        return -1
    draw = float(keyed_uniform(seed, np.array([device]), np.array([step + PARTNER_STREAM * (1 << 32)]))[0])
    return int(candidates[min(int(draw * len(candidates)), len(candidates) - 1)])


STEPS_STREAM = 0x5A4B  # offsets the step for the local-step counts, a stream of their own


def local_step_counts(seed: int, steps: int, devices: int, mean: float) -> np.ndarray:
    """(steps, devices) how many local steps each device runs before its k-th message: geometric on {1, 2, ...}
    with mean ``mean`` (SwarmSGD's random local steps), keyed by (seed, device, step); ``mean`` 1: always 1."""
    if mean <= 1.0:
        return np.ones((steps, devices), dtype=np.int64)
    step, device = np.meshgrid(np.arange(steps), np.arange(devices), indexing="ij")
    u = keyed_uniform(seed, device, step + STEPS_STREAM * (1 << 32))
    return 1 + np.floor(np.log1p(-u) / np.log1p(-1.0 / mean)).astype(np.int64)
