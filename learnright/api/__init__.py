"""The HTTP API (FastAPI): rights holders, auditors and operators. OpenAPI at /openapi.json, docs at /docs.

Every route calls the same service functions as the CLI (:mod:`ledger.services.tokens`,
:mod:`ledger.storage.sql`, :mod:`ledger.storage.snapshots`, :mod:`ledger.services.close`); none holds business
logic. The service's single :class:`~ledger.storage.store.Ledger` owns the file; requests read
through a pool of readers, each on its own DuckDB cursor, made before any thread starts.

Routes live in modules by audience: ``operators`` (health, readiness, metrics),
``holders`` (statements, downloads, royalties, the signing key), ``members`` (collectives'
members' distribution statements), ``auditors`` (SQL, snapshots) and ``consent`` (a
holder's revocations and unlicensed use, a platform's licensed-model evidence). ``auth``
holds the token dependencies, ``errors`` the JSON error answers,
``observe`` the request metrics and log, ``limits`` the request body's cap and deadline,
``downloads`` the ``Content-Disposition`` of files, ``context`` what the routes share.

Tenant isolation: a holder token sees only its holder's statements, and another
holder's statement id answers exactly as a missing one does (404, same body); a member
token sees only its own distribution statements, a collective's token its members'.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

import ground
from ground.metrics import Metrics
from ground.settings import Settings
from learnright.api import auditors, consent, holders, members, operators
from learnright.api.context import ApiContext, ReaderPool, direct_writer
from learnright.api.errors import install_error_handlers
from learnright.api.limits import BodyLimits
from learnright.api.observe import install_observer
from ledger.core.records import LedgerTotals
from ledger.storage.sql import SqlLimits
from ledger.storage.store import Ledger

__all__ = ["create_app"]

WEB = Path(__file__).parent.parent / "web"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(*, ledger: Ledger, settings: Settings, metrics: Metrics,
               readiness: Callable[[], str | None] = lambda: None, now: Callable[[], datetime] = _now,
               write: Callable | None = None) -> FastAPI:
    """The ASGI app over ``ledger``. ``readiness()`` returns None when ready, else why not.

    ``write(job)`` runs ``job(writer)`` on the ledger's single writer (the running service
    queues it, :meth:`consumers.scheduler.LedgerService.submit`); by default on ``ledger``.
    """
    app = FastAPI(title="Learnright", version=ground.__version__,
                  description="Usage-metered royalty ledger: statements for rights holders, SQL and snapshots for"
                              " auditors, metrics for operators. See docs/api.md.")
    pool = ReaderPool(ledger)
    limits = SqlLimits.from_settings(settings.sql)
    app.state.context = ApiContext(settings=settings, metrics=metrics, pool=pool, limits=limits,
                                   sql_slots=threading.BoundedSemaphore(settings.sql.max_concurrent),
                                   readiness=readiness, now=now, write=write or direct_writer(ledger))
    metrics.watch_ledger(lambda: _ledger_state(pool))
    metrics.watch_outbox(lambda: _outbox_pending(pool))
    metrics.watch_signing_key(settings.signing_key)
    # Middlewares, innermost first: errors answered as JSON, then the body's cap and deadline,
    # then the metrics and request log, which see every answer the others give.
    install_error_handlers(app)
    app.add_middleware(BodyLimits, max_bytes=settings.http.max_body_bytes, timeout_s=settings.http.body_timeout_s)
    install_observer(app, metrics)
    for router in (operators.router, holders.router, members.router, auditors.router, consent.router):
        app.include_router(router)
    app.get("/", include_in_schema=False)(root)
    app.mount("/app", StaticFiles(directory=WEB, html=True), name="app")
    return app


def root() -> RedirectResponse:
    """The holder's page."""
    return RedirectResponse("/app/")


def _outbox_pending(pool: ReaderPool) -> int:
    """Signed statements whose StatementClosed event the broker has not acknowledged, for the metrics."""
    with pool.reader() as reader:
        return len(reader.unpublished_statements())


def _ledger_state(pool: ReaderPool) -> LedgerTotals:
    """Accrued totals per currency and the latest close, for the metrics."""
    with pool.reader() as reader:
        return reader.totals()
