"""Keep freed memory in the process for reuse, instead of handing it back to the OS (glibc only).

Why by hand: no library does this. glibc serves every block above its mmap threshold (at most
32 MB) with a fresh mmap and unmaps it on free. A forward+backward pass of EfficientNet-Lite0 on
32 images at 224 px allocates many such blocks, so every pass page-faulted gigabytes of new zeroed
pages, and the kernel's share of the CPU time was about as large as the model's. With mmap off and
trimming off, a freed block is reused by the next pass (benchmarks/RESULTS.md, bench_memory.py:
training steps, explainer and inference passes all faster). The cost: a higher peak, and the process
keeps its peak memory until it exits, unless it hands back what is free between stages of work
(release_freed_memory). TUMORLENS_MALLOC=system keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied = False


@functools.cache
def _libc():
    """glibc's handle, or None under another C library (musl): then memory is left alone."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def reuse_freed_memory() -> bool:
    """Apply once per process; True if glibc now keeps freed memory for reuse."""
    global _applied
    if _applied:
        return True
    if os.environ.get("TUMORLENS_MALLOC", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    libc = _libc()
    if libc is None:
        return False
    _applied = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
    return _applied


def release_freed_memory() -> None:
    """Hand the memory that is free now back to the OS (glibc's malloc_trim), once reuse_freed_memory()
    is in force; otherwise glibc trims by itself and this does nothing.

    Why: with trimming off, every stage of a long run (the audit: segmenter, image pass, explainer
    comparison...) leaves behind the pages its largest model passes touched, and a later stage whose
    blocks do not fit those holes takes new ones, so the peak grew stage by stage (the Kaggle audit
    held 4.0 GB while its live data was under 0.4 GB; benchmarks/RESULTS.md, bench_data_memory.py).
    Called between stages, it costs one round of page faults per stage, not one per pass."""
    if _applied:  # implies _libc() is glibc
        _libc().malloc_trim(0)
