"""Keep freed memory in the process for reuse, instead of handing it back to the OS (glibc only).

Why by hand: no library does this. glibc serves every block above its mmap threshold (at most
32 MB) with a fresh mmap and unmaps it on free. A forward+backward pass of EfficientNet-Lite0 on
32 images at 224 px allocates many such blocks, so every pass page-faulted gigabytes of new zeroed
pages, and the kernel's share of the CPU time was about as large as the model's. With mmap off and
trimming off, a freed block is reused by the next pass (benchmarks/RESULTS.md, bench_memory.py:
training steps, explainer and inference passes all faster). The cost: a higher peak, and the process
keeps its peak memory until it exits. TUMORLENS_MALLOC=system keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied = False


def reuse_freed_memory() -> bool:
    """Apply once per process; True if glibc now keeps freed memory for reuse."""
    global _applied
    if _applied:
        return True
    if os.environ.get("TUMORLENS_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl): leave it alone
        return False
    _applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
    return _applied
