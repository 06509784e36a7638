"""Python's cyclic garbage collector, paused around work that makes millions of objects.

Reference counting frees every object without cycles the moment it is dropped; the cyclic
collector exists for the rest, and runs whenever allocations outnumber deallocations by its
threshold (700). Work that keeps millions of objects (a license book of 250,000 versions) or makes
and drops millions (a close's statement lines and documents) sets it off thousands of times, and
every older-generation pass walks every object then alive, the book's millions included. Measured
at 250,000 licenses and 100,000 statements (docs/benchmarks.md): the book's read took 8-9 s of CPU
with the collector paused against 11.8 s, a close 42 s against 51 s.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_LOCK = threading.Lock()
_DEPTH = 0
"""Blocks inside :func:`collection_paused` now, over every thread; the collector runs again at 0."""
_RESTORE = False
"""Whether the collector was enabled when the outermost block began (and so is enabled again after)."""


@contextmanager
def collection_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for the block, in the whole process; as it was after the last block.

    Guarantees: nothing is lost. Objects without cycles are still freed at once; cyclic garbage
    made inside the block is collected by the collector's first run after it. Blocks may nest and
    run in several threads at once: the collector runs again when the last one ends, and only if
    it was enabled before the first began.
    """
    global _DEPTH, _RESTORE
    with _LOCK:
        if _DEPTH == 0:
            _RESTORE = gc.isenabled()
            gc.disable()
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0 and _RESTORE:
                gc.enable()
