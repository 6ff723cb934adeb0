"""Giving freed heap memory back to the system, where the C library can.

glibc keeps what a process freed for its next allocations, in one arena per thread that ever
allocated: after a camera frame was decoded in a worker thread and dropped, the eyes would go
on holding its pages (about 5 MB here) until the next frame. `trim()` hands them back.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        # The symbols the process already has: libc's, without looking for its file.
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


def trim() -> None:
    """Returns the free pages of every malloc arena to the system (glibc); a no-op elsewhere."""
    malloc_trim = _malloc_trim()
    if malloc_trim is not None:
        malloc_trim(0)


def settle() -> None:
    """After start-up: start-up's garbage collected and the heap trimmed, so a service does not
    keep the high-water mark of building its parts (a parsed config, a compiled grammar's
    temporaries) for as long as it runs. Not gc.freeze(): what start-up built may become
    garbage later (a grammar replaced), and frozen objects are never collected."""
    gc.collect()
    trim()
