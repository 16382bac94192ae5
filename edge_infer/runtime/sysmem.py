"""Keeping freed memory for reuse, so a frame loop does not page-fault every frame.

glibc's ``malloc`` serves big blocks (over ``M_MMAP_THRESHOLD``, which starts at
128 KB and rises with the blocks freed, up to 32 MB) with fresh ``mmap``s, and hands
the top of its heap back to the OS once more than ``M_TRIM_THRESHOLD`` of it is free.
A camera pipeline allocates and frees a few megabytes of frame-sized arrays per
frame, so both rules make the kernel map and zero those pages again on every frame:
on the benchmark machine, the full ``detect`` pipeline took about 600 page faults per
640x480 frame, 2-3 ms of system time on top of 17-18 ms of its own work.

:func:`keep_freed_memory` raises both thresholds, so freed blocks stay in the
process for the next frame. The price: the resident size stays at the loop's peak
(plus at most ``trim_mb`` of free heap) instead of shrinking between frames.

Library calls never do this by themselves (the allocator is the whole process's);
the ``edge-infer camera``, ``serve`` and ``bench`` commands do, unless the
environment sets ``EDGE_INFER_MALLOC=system``. A program of your own calls
:func:`keep_freed_memory` once at start-up, or sets glibc's own variables
``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` before Python starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_MAX_MB = 32  # glibc refuses larger mmap thresholds on 64-bit (HEAP_MAX_SIZE / 2)
_MMAP_MAX_32BIT = 512 << 10  # and larger than this on 32-bit
_kept = False


def keeps_freed_memory() -> bool:
    """True once :func:`keep_freed_memory` has succeeded in this process."""
    return _kept


def keep_freed_memory(trim_mb: int = 64, mmap_mb: int = _MMAP_MAX_MB) -> bool:
    """Asks glibc's malloc to keep freed memory for reuse (see the module docstring).

    Args:
        trim_mb: Free heap kept before any is returned to the OS, in MB.
        mmap_mb: Blocks up to this size (MB, at most 32) come from the heap rather
            than from their own ``mmap``. A 32-bit glibc takes at most 512 KB, which
            is then used instead.

    Returns:
        True when both settings were applied; False on a C library without
        ``mallopt`` (musl, macOS, Windows), when ``EDGE_INFER_MALLOC=system`` is
        set, or when glibc refused a value.

    Raises:
        ValueError: A size is not a positive int, or ``mmap_mb`` is over 32.
    """
    global _kept
    for name, v in (("trim_mb", trim_mb), ("mmap_mb", mmap_mb)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int (megabytes), got {v!r}")
    if mmap_mb > _MMAP_MAX_MB:
        raise ValueError(f"mmap_mb must be at most {_MMAP_MAX_MB} (glibc's limit), got {mmap_mb}")
    if os.environ.get("EDGE_INFER_MALLOC", "").strip().lower() == "system":
        log.info("EDGE_INFER_MALLOC=system: malloc left as it is")
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("no mallopt in this C library: malloc left as it is")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not mallopt(_M_TRIM_THRESHOLD, trim_mb << 20):
        log.info("mallopt refused a trim threshold of %d MB: malloc left as it is", trim_mb)
        return False
    mmap_bytes = mmap_mb << 20
    if not mallopt(_M_MMAP_THRESHOLD, mmap_bytes):
        mmap_bytes = _MMAP_MAX_32BIT  # a 32-bit glibc (armv7l) takes at most this
        if not mallopt(_M_MMAP_THRESHOLD, mmap_bytes):
            log.info("mallopt refused an mmap threshold of %d MB: only the trim threshold was raised", mmap_mb)
            return False
    log.info("malloc keeps freed memory: trim threshold %d MB, mmap threshold %d KB", trim_mb, mmap_bytes >> 10)
    _kept = True
    return True
