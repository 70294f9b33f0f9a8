"""Keep freed large tensors in the process heap instead of handing them back to the kernel.

glibc returns every block above its mmap threshold straight to the kernel when it is
freed, and trims the top of the heap beyond 128 KB. A round allocates and frees
several (N, d) tensors (31 MB each for 50 devices with the MLP), so each of them was
page-faulted in afresh: measured, one MLP training step for 50 devices at batch 32
took 77 ms with glibc's defaults and 52 ms with both thresholds raised (`make bench`).
Results do not change: only where freed memory goes.
"""

from __future__ import annotations

import ctypes
import functools

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_ONE_GIB = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds to 1 GiB, once per process; False where there is no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt): keep the defaults
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, _ONE_GIB)) and bool(mallopt(_M_TRIM_THRESHOLD, _ONE_GIB))
