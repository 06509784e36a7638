"""`learnright serve` in one process: the consumer and scheduler, the HTTP API, snapshots.

The consumer loop (and each close, between two batches) runs in the calling thread on
the service's single :class:`~ledger.storage.store.Ledger`; uvicorn serves the API in a thread
of its own, reading through cursors; a small watcher publishes a snapshot after each
close. Everything binds 127.0.0.1 unless ``http.host`` says otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from functools import partial

import uvicorn

from learnright.api import create_app
from learnright.connections import HeadDeadlineProtocol
from ground.errors import ConfigError
from ground.metrics import Metrics
from ground.settings import HttpSettings, Settings
from ledger.storage.snapshots import latest_snapshot, publish_snapshot
from ledger.storage.store import Ledger

log = logging.getLogger(__name__)


class HttpServer:
    """uvicorn in a daemon thread; :meth:`start` returns once it listens, with the port.

    A connection is closed when its request head is not complete ``http.header_timeout_s``
    after it began (:class:`~learnright.connections.HeadDeadlineProtocol`) and when it has
    been idle ``http.keep_alive_s`` between requests; the body's cap and deadline are the
    app's (:mod:`learnright.api.limits`).
    """

    def __init__(self, app, host: str, port: int, *, http: HttpSettings | None = None):
        http = http or HttpSettings()
        protocol = partial(HeadDeadlineProtocol, header_timeout_s=http.header_timeout_s)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, http=protocol,
                                                    timeout_keep_alive=http.keep_alive_s, log_config=None,
                                                    access_log=False, lifespan="off", server_header=False))
        self.thread = threading.Thread(target=self.server.run, name="learnright-http", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout_s: float = 15.0) -> "HttpServer":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"the HTTP API could not listen on {self.host}:{self.port} (LEARNRIGHT_HTTP__HOST,"
                                  " LEARNRIGHT_HTTP__PORT); see the log above")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class SnapshotOnClose:
    """Publishes a snapshot whenever a new close appears in the ledger (and at start if none exists)."""

    def __init__(self, ledger: Ledger, settings: Settings, metrics: Metrics, interval_s: float = 2.0):
        self.reader = ledger.reader()  # made here, in the owning thread; used only by the watcher thread
        self.settings = settings
        self.metrics = metrics
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="learnright-snapshots", daemon=True)

    def start(self) -> "SnapshotOnClose":
        self.thread.start()
        return self

    def _run(self) -> None:
        seen = None if latest_snapshot(self.settings.snapshots_dir) is None else self._latest_close()
        while not self.stopped.is_set():
            try:
                latest = self._latest_close()
                if latest != seen:
                    snapshot = publish_snapshot(self.reader, self.settings.snapshots_dir, now=datetime.now(timezone.utc))
                    self.metrics.snapshots_published.inc()
                    log.info("snapshot published", extra={"snapshot": snapshot.snapshot_id, "after_close": latest})
                    seen = latest
            except Exception:  # noqa: BLE001 - logged; the service goes on, the next round tries again
                log.exception("publishing a snapshot failed")
            self.stopped.wait(self.interval_s)

    def _latest_close(self):
        close = self.reader.latest_close()
        return None if close is None else (close.period, close.closed_at)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


def serve(settings: Settings, ledger: Ledger, service, *, on_listening=lambda url: None) -> None:
    """Runs ``service`` (a :class:`consumers.scheduler.LedgerService`) with the HTTP API until it stops."""
    consumer = service.consumer

    def readiness() -> str | None:
        if consumer.progress.stalled:  # no exception text: the failures are in the log
            return (f"the consumer is stalled: {consumer.progress.failures} batches in a row failed to apply and"
                    " it keeps reading them again from the ledger's offsets; see the service log")
        return None if consumer.consumer.assignment() else "the consumer has no partitions assigned yet"

    app = create_app(ledger=ledger, settings=settings, metrics=consumer.metrics, readiness=readiness)
    watcher = SnapshotOnClose(ledger, settings, consumer.metrics)
    http = HttpServer(app, settings.http.host, settings.http.port, http=settings.http).start()
    log.info("HTTP API listening", extra={"url": http.url})
    on_listening(http.url)
    watcher.start()
    try:
        service.run()
    finally:
        http.stop()
        watcher.stop()
