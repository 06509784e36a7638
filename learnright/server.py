"""`learnright serve` in one process: the consumer and scheduler, the HTTP API, the admin socket, snapshots.

The consumer loop (and each close, between two batches) runs in the calling thread on
the service's single :class:`~ledger.storage.store.Ledger`; uvicorn serves the API in a thread
of its own, reading through cursors; a small watcher publishes a snapshot after each
close. Everything binds 127.0.0.1 unless ``http.host`` says otherwise. The admin interface
(:mod:`learnright.admin`) listens on a unix socket beside the ledger (mode 0600) and
queues the CLI's writes onto the consuming thread (:meth:`LedgerService.submit`).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from functools import partial

import uvicorn

from learnright.admin.server import AdminServer, create_admin_app
from learnright.api import create_app
from learnright.connections import HeadDeadlineProtocol
from ground.errors import ConfigError
from ground.metrics import Metrics
from ground.settings import HttpSettings, Settings
from ledger.storage.snapshots import CloseMark, snapshot_after_close
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
    """Publishes a snapshot once the ledger holds a close the latest snapshot does not cover.

    Polls the ledger's latest close every ``snapshots.watch_interval_s`` (1 s by default)
    on a reader cursor of its own, so it sees a close however it was made: by the
    scheduler, by a close asked of the running service by hand, or on the file before the
    service started (the first poll compares the ledger with ``LATEST``'s manifest). When
    there is no snapshot at all, the first poll publishes one. Each publish prunes to
    ``snapshots.keep_last`` plus one per close. A failed publish is logged and tried again
    at the next poll.
    """

    def __init__(self, ledger: Ledger, settings: Settings, metrics: Metrics, interval_s: float | None = None):
        self.reader = ledger.reader()  # made here, in the owning thread; used only by the watcher thread
        self.settings = settings
        self.metrics = metrics
        self.interval_s = settings.snapshots.watch_interval_s if interval_s is None else interval_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="learnright-snapshots", daemon=True)

    def start(self) -> "SnapshotOnClose":
        self.thread.start()
        return self

    def _run(self) -> None:
        seen: object = _UNSEEN  # the first poll always checks LATEST against the ledger
        while not self.stopped.is_set():
            try:
                latest = CloseMark.of(self.reader.latest_close())
                if latest != seen:
                    snapshot, published = snapshot_after_close(
                        self.reader, self.settings.snapshots_dir, now=datetime.now(timezone.utc),
                        keep_last=self.settings.snapshots.keep_last)
                    if published:
                        self.metrics.snapshots_published.inc()
                        log.info("snapshot published", extra={
                            "snapshot": snapshot.snapshot_id,
                            "after_close": None if latest is None else latest.period})
                    seen = latest
            except Exception:  # noqa: BLE001 - logged; the service goes on, the next round tries again
                log.exception("publishing a snapshot failed")
            self.stopped.wait(self.interval_s)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


_UNSEEN = object()


def serve(settings: Settings, ledger: Ledger, service, *, on_listening=lambda url: None) -> None:
    """Runs ``service`` (a :class:`consumers.scheduler.LedgerService`) with the HTTP API until it stops."""
    consumer = service.consumer

    def readiness() -> str | None:
        if consumer.progress.stalled:  # no exception text: the failures are in the log
            return (f"the consumer is stalled: {consumer.progress.failures} batches in a row failed to apply and"
                    " it keeps reading them again from the ledger's offsets; see the service log")
        return None if consumer.consumer.assignment() else "the consumer has no partitions assigned yet"

    app = create_app(ledger=ledger, settings=settings, metrics=consumer.metrics, readiness=readiness,
                     write=lambda job: service.submit(job).result())
    watcher = SnapshotOnClose(ledger, settings, consumer.metrics)
    admin = AdminServer(create_admin_app(service=service, ledger=ledger, settings=settings),
                        settings.admin_socket).start()
    try:
        http = HttpServer(app, settings.http.host, settings.http.port, http=settings.http).start()
    except BaseException:
        admin.stop()
        raise
    log.info("HTTP API listening", extra={"url": http.url, "admin_socket": str(admin.path)})
    on_listening(http.url)
    watcher.start()
    try:
        service.run()
    finally:
        http.stop()
        admin.stop()  # after run(): a command still queued has failed with ServiceStoppingError by now
        watcher.stop()
