"""What every route shares: the service's settings and metrics, its readers, the clock.

:func:`create_app` stores one :class:`ApiContext` on ``app.state``; a route asks for it
with ``Depends(context)``.
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator

from fastapi import Request

from ground.metrics import Metrics
from ground.settings import Settings
from ledger.storage.sql import SqlLimits
from ledger.storage.store import Ledger

READERS = 8


class ReaderPool:
    """Readers of the ledger, each on its own cursor; a request checks one out."""

    def __init__(self, ledger: Ledger, size: int = READERS):
        self.ledger = ledger
        self.free: queue.Queue[Ledger] = queue.Queue()
        for _ in range(size):
            self.free.put(ledger.reader())

    @contextmanager
    def reader(self) -> Iterator[Ledger]:
        reader = self.free.get()
        try:
            yield reader
        finally:
            self.free.put(reader)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    """The service's state as the routes see it, made once per app."""

    settings: Settings
    metrics: Metrics
    pool: ReaderPool
    limits: SqlLimits
    """The sandbox limits of an auditor query."""
    sql_slots: threading.BoundedSemaphore
    """One slot per auditor query that may run at once (``sql.max_concurrent``)."""
    readiness: Callable[[], str | None]
    """None when the service is ready, else why not."""
    now: Callable[[], datetime]
    write: Callable[[Callable[[Ledger], Any]], Any] | None = None
    """Runs a job on the ledger's single writer and returns its answer (a holder's revocation):
    queued onto the running service's writer, or on the app's own ledger under a lock."""


def context(request: Request) -> ApiContext:
    """The app's :class:`ApiContext` (a dependency: it adds nothing to the OpenAPI document)."""
    return request.app.state.context


def direct_writer(ledger: Ledger) -> Callable[[Callable[[Ledger], Any]], Any]:
    """Writes on ``ledger`` itself, one job at a time: for an app whose ledger no consumer writes (tests, tools)."""
    lock = threading.Lock()

    def write(job: Callable[[Ledger], Any]) -> Any:
        with lock:
            return job(ledger)

    return write
