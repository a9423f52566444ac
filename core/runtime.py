"""Process-level settings for fast CPU inference: intra-op threads and freed-memory reuse.

Both are measured in bench/ (bench/README.md): neither changes what the model computes.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sys

import torch

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_kept_memory: bool | None = None  # None: not tried yet; then whether glibc accepted it


@contextlib.contextmanager
def intra_op_threads(threads: int | None):
    """torch's intra-op thread count set to `threads` for the block (None: unchanged), then restored."""
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS.

    PyTorch's CPU tensors come from malloc. By default glibc serves blocks over its mmap
    threshold (128 KiB, raised adaptively up to 32 MiB) with a fresh mmap and unmaps them on
    free, and trims the heap top once it holds more free memory than the trim threshold. Every
    forward then page-faults its large activations back in: the kernel zeroes each 4 KiB page on
    first touch. Measured at one thread (bench/README.md): ST-MANet-50 at batch 8 page-faulted
    ~240k times per forward (0.5 s of system time, 12 % of the forward; the plain backbone ~200k),
    and single 12.8 MB stage-2 outputs took 10 ms instead of 7 ms at batch 1. With mmap off and
    trimming off, freed blocks are reused and both go to zero. The cost: the process keeps its
    peak heap (what a caching allocator such as jemalloc, tcmalloc or PyTorch's CUDA allocator
    does too). Blocks larger than a thread arena's heap (64 MiB) still fall back to mmap in
    threads other than the main one, as glibc does for them.

    Process-wide and idempotent; a no-op returning False off glibc (macOS, Windows, musl).
    """
    global _kept_memory
    if _kept_memory is not None:
        return _kept_memory
    _kept_memory = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; musl has no mallopt symbol (AttributeError above)
    _kept_memory = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if not _kept_memory:
        log.info("glibc refused the malloc settings: freed memory is returned to the OS as usual")
    return _kept_memory
