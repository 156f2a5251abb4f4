"""Handing the heap memory a finished call freed back to the operating system.

A call allocates and frees a few megabytes in native code (codecs, SRTP, OpenSSL, the
resampler's filter graph). glibc keeps freed pages mapped for reuse, scattered between
live blocks, so a relay's resident memory creeps up over many calls although nothing
leaks: scripts/bench measured about +28 KiB per call after warm-up over 100 sequential
calls, and flat (no trend from call 20 to 100) with ``malloc_trim(0)`` after each call.
The trim walks the heap once and takes well under a millisecond.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


def heap_trimmer() -> Callable[[], None] | None:
    """A function that releases free heap pages, or None where libc has no malloc_trim."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        malloc_trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int

    def trim() -> None:
        started = time.perf_counter()
        malloc_trim(0)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("heap trimmed in %.2f ms", 1000 * (time.perf_counter() - started))

    return trim
