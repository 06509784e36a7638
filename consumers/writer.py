"""One thread that applies batches in order, so polling the next batch overlaps writing this one.

The consumer thread polls Kafka (Python) while this thread builds and appends (native
code and DuckDB, both outside the GIL), which is how ingestion uses both cores.

Guarantees:
  * Jobs run one at a time, in submission order, on one thread: the ledger keeps one writer.
  * At most ``waiting`` jobs wait behind the running one (none by default): :meth:`submit`
    blocks until there is room, so the batches held in memory are bounded whatever the
    backlog. The consumer holds one more, the batch it gathers while this one is written.
  * A job's exception stops the writer for good: every later :meth:`submit` and
    :meth:`drain` raises it, and no later job runs. The consumer's positions are already
    past the failed batch, so carrying on would skip it: the consumer replaces the
    writer and seeks back to the ledger's offsets to read the batch again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import queue
import threading
from typing import Callable

_STOP = object()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, where the C library has one."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: its allocator returns memory its own way
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Hands the memory of freed batches back to the operating system.

    glibc keeps freed memory in its heaps for reuse, so without this the resident size of
    the process stays at its largest batch ever, whatever the batches that follow.
    """
    if _TRIM is not None:
        _TRIM(0)


class BatchWriter:
    def __init__(self, name: str = "ledger-writer", *, waiting: int = 0):
        if waiting < 0:
            raise ValueError(f"a writer's waiting jobs must be >= 0 (got {waiting})")
        self.capacity = 1 + waiting
        """Jobs submitted and not yet finished, at most: the running one and those waiting."""
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._jobs: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is _STOP:
                    return
                if self._error is None:
                    job()
            except BaseException as exc:  # handed to the caller by submit() or drain()
                self._error = exc
            finally:
                job = None  # the batch it held is freed before the next one is let in
                release_freed_memory()
                self._jobs.task_done()
                self._slots.release()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, job: Callable[[], None]) -> None:
        """Queues ``job`` once there is room; raises the error of an earlier job instead, if one failed."""
        self._raise()
        self._slots.acquire()
        self._jobs.put(job)

    @property
    def idle(self) -> bool:
        """No job is running or waiting: a batch submitted now is written at once."""
        return self._jobs.unfinished_tasks == 0

    def wait(self) -> None:
        """Waits until every submitted job has run, keeping any error for the next call."""
        self._jobs.join()

    def drain(self) -> None:
        """Waits until every submitted job has run; raises the first error among them."""
        self._jobs.join()
        self._raise()

    def close(self) -> None:
        """Finishes the submitted jobs and ends the thread (errors are dropped: the caller is closing)."""
        if self._thread.is_alive():
            self._slots.acquire()
            self._jobs.put(_STOP)
            self._thread.join()
