"""One thread that applies batches in order, so polling the next batch overlaps writing this one.

The consumer thread polls Kafka (Python) while this thread builds and appends (native
code and DuckDB, both outside the GIL), which is how ingestion uses both cores.

Guarantees:
  * Jobs run one at a time, in submission order, on one thread: the ledger keeps one writer.
  * At most one job waits behind the running one; :meth:`submit` blocks until there is
    room, so memory stays bounded whatever the backlog.
  * A job's exception stops the writer for good: every later :meth:`submit` and
    :meth:`drain` raises it, and no later job runs. The consumer's positions are already
    past the failed batch, so carrying on would skip it: the consumer replaces the
    writer and seeks back to the ledger's offsets to read the batch again.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

_STOP = object()


class BatchWriter:
    def __init__(self, name: str = "ledger-writer"):
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
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
                self._jobs.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, job: Callable[[], None]) -> None:
        """Queues ``job``; raises the error of an earlier job instead, if one failed."""
        self._raise()
        self._jobs.put(job)

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
            self._jobs.put(_STOP)
            self._thread.join()
