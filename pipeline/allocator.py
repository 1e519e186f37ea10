"""Host-memory allocator settings for video-sized activations (glibc malloc, Linux).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh mmap and hands
it back on free, so each forward pass of a video CNN page-faults its activations in again: on the
project's CPU machine the kernel time of a batch-8 R(2+1)D-18 forward was a third of the total.
`keep_freed_memory()` makes malloc take big blocks from its heap and keep freed memory for reuse,
as CUDA's caching allocator does on GPUs (benchmarks/RESULTS.md section 1 has the measurement).
The cost: the process keeps its peak footprint until it exits, and the heap fragments (peak RSS of
the batch-8 benchmark 2.9 GB instead of 2.0 GB). `runtime.keep_freed_memory=false` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import warnings

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

_applied = False


def keep_freed_memory(top_pad: int = 64 << 20) -> bool:
    """Serve large blocks from the malloc heap and never trim it; True when applied (idempotent).

    No-op (False, with a warning) where the C library is not glibc. Applies to this process and to
    processes forked after the call (DataLoader workers).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        warnings.warn("keep_freed_memory: no glibc mallopt here; the allocator is left as it is")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success. The trim threshold is an int: its maximum keeps the heap.
    ok = (mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
          and mallopt(M_TOP_PAD, top_pad) == 1)
    _applied = ok
    return ok
