"""The HTTP API (FastAPI): rights holders, auditors and operators. OpenAPI at /openapi.json, docs at /docs.

Every route calls the same service functions as the CLI (:mod:`ledger.services.tokens`,
:mod:`ledger.storage.sql`, :mod:`ledger.storage.snapshots`, :mod:`ledger.services.close`); none holds business
logic. The service's single :class:`~ledger.storage.store.Ledger` owns the file; requests read
through a pool of readers, each on its own DuckDB cursor, made before any thread starts.

Tenant isolation: a holder token sees only its holder's statements, and another
holder's statement id answers exactly as a missing one does (404, same body).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

import ground
from ground.errors import LearnrightError
from ground.metrics import CONTENT_TYPE, Metrics
from ground.settings import Settings
from ledger.core.royalties import monthly_by_source
from ledger.storage.snapshots import SnapshotError, latest_snapshot, list_snapshots, publish_snapshot, read_snapshot
from ledger.storage.sql import FORMATS, SqlLimits, SqlRefusedError, SqlTimeoutError, SqlTooLargeError, run_query, strip_paths
from ledger.core.statements import render_csv
from ledger.storage.store import Ledger
from ledger.services.tokens import AUDITOR, AuthenticationError, TokenRecord, authenticate

log = logging.getLogger("learnright.http")
WEB = Path(__file__).parent / "web"
NOT_FOUND = {"error": "not_found", "message": "no statement with this id"}
NO_SNAPSHOT = {"error": "not_found", "message": "no such snapshot"}
READERS = 8
SQL_RETRY_AFTER_S = 1


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None):
        self.status, self.error, self.message, self.headers = status, error, message, headers or {}


class SqlRequest(BaseModel):
    sql: str = Field(..., description="Exactly one SELECT (DuckDB SQL).", examples=["SELECT * FROM audit_reconciliation"])
    format: Literal["json", "csv", "arrow"] = Field("json", description="json, csv or arrow (Arrow IPC stream).")


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


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(*, ledger: Ledger, settings: Settings, metrics: Metrics,
               readiness: Callable[[], str | None] = lambda: None, now: Callable[[], datetime] = _now) -> FastAPI:
    """The ASGI app over ``ledger``. ``readiness()`` returns None when ready, else why not."""
    app = FastAPI(title="Learnright", version=ground.__version__,
                  description="Usage-metered royalty ledger: statements for rights holders, SQL and snapshots for"
                              " auditors, metrics for operators. See docs/api.md.")
    pool = ReaderPool(ledger)
    bearer = HTTPBearer(auto_error=False, description="lr.<token_id>.<secret> from `learnright tokens create`")
    limits = SqlLimits(time_limit_s=settings.sql.time_limit_s, row_limit=settings.sql.row_limit,
                       memory_limit=settings.sql.memory_limit, max_result_bytes=settings.sql.max_result_bytes)
    sql_slots = threading.BoundedSemaphore(settings.sql.max_concurrent)

    def ledger_state() -> tuple[list[tuple], object]:
        with pool.reader() as reader:
            accrued = reader.query("SELECT currency, sum(amount) FROM accruals GROUP BY ALL ORDER BY ALL")
            latest = reader.query("SELECT max(closed_at) FROM period_closes")[0][0]
        return accrued, latest

    metrics.watch_ledger(ledger_state)

    # -- plumbing --------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "message": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(LearnrightError)
    async def _learnright_error(request: Request, exc: LearnrightError) -> JSONResponse:
        # The detail (paths, values) stays in the log; the client gets a reference to it.
        reference = uuid.uuid4().hex[:12]
        log.warning("request failed", extra={"path": request.url.path, "error": type(exc).__name__,
                                             "detail": str(exc), "reference": reference})
        return JSONResponse({"error": "internal", "message": f"internal error, reference {reference}"},
                            status_code=500)

    @app.middleware("http")
    async def _observe(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or ("/app" if request.url.path.startswith("/app") else "unmatched")
        elapsed = time.perf_counter() - started
        metrics.http_requests.labels(route=template, method=request.method, status=str(response.status_code)).inc()
        metrics.http_seconds.labels(route=template).observe(elapsed)
        if template not in ("/metrics", "/healthz", "/readyz", "/app"):
            log.info("http request", extra={"method": request.method, "route": template, "status": response.status_code,
                                            "duration_ms": round(elapsed * 1000, 2),
                                            "token_id": getattr(request.state, "token_id", None)})
        return response

    def principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> TokenRecord:
        with pool.reader() as reader:
            try:
                record = authenticate(reader, credentials.credentials if credentials else None, now=now())
            except AuthenticationError as exc:
                raise ApiError(401, "unauthorized", str(exc), {"WWW-Authenticate": 'Bearer realm="learnright"'}) from exc
        request.state.token_id = record.token_id
        return record

    def auditor(record: TokenRecord = Depends(principal)) -> TokenRecord:
        if record.role != AUDITOR:
            raise ApiError(403, "forbidden", "this needs an auditor token (`learnright tokens create --auditor`)")
        return record

    def own_document(reader: Ledger, record: TokenRecord, statement_id: str) -> str:
        found = reader.statement_document(statement_id)
        if found is None or (record.role != AUDITOR and json.loads(found[0])["holder"]["id"] != record.holder_id):
            raise ApiError(404, NOT_FOUND["error"], NOT_FOUND["message"])
        return found[0]

    # -- operators -----------------------------------------------------------------------

    @app.get("/healthz", tags=["operators"], summary="Liveness: the process answers.")
    def healthz() -> dict:
        return {"status": "ok", "version": ground.__version__}

    @app.get("/readyz", tags=["operators"], summary="Readiness: the ledger reads and the consumer is assigned.")
    def readyz() -> JSONResponse:
        try:
            with pool.reader() as reader:
                reader.query("SELECT 1")
            reason = readiness()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; the detail goes to the log
            reference = uuid.uuid4().hex[:12]
            log.warning("readiness check failed", extra={"error": type(exc).__name__, "detail": str(exc),
                                                         "reference": reference})
            reason = f"the readiness check failed, reference {reference}"
        if reason:
            return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operators"], summary="Prometheus metrics (text exposition format); auditor token.",
             responses={401: {"description": "No valid token."}, 403: {"description": "Not an auditor token."}})
    def prometheus(record: TokenRecord = Depends(auditor)) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    # -- rights holders --------------------------------------------------------------------

    @app.get("/v1/me", tags=["holders"], summary="Who this token is.")
    def me(record: TokenRecord = Depends(principal)) -> dict:
        return {"token_id": record.token_id, "role": record.role, "holder_id": record.holder_id,
                "expires_at": record.expires_at.isoformat() if record.expires_at else None}

    @app.get("/v1/statements", tags=["holders"], summary="Closed statements: a holder's own; every one for auditors.")
    def statements(period: str | None = None, record: TokenRecord = Depends(principal)) -> dict:
        holder = None if record.role == AUDITOR else record.holder_id
        with pool.reader() as reader:
            rows = reader.statement_rows(period=period, holder_id=holder)
        return {"statements": [
            {"statement_id": sid, "period": p, "holder_id": h, "currency": c, "accrued": str(accrued),
             "carry_in": str(carry_in), "payable": str(payable), "carry_out": str(carry_out), "content_hash": digest,
             "downloads": {fmt: f"/v1/statements/{sid}/{fmt}" for fmt in ("json", "csv", "pdf")}}
            for sid, p, h, c, accrued, carry_in, payable, carry_out, digest, *_ in rows
        ]}

    @app.get("/v1/statements/{statement_id}", tags=["holders"], summary="One statement's document.",
             responses={404: {"description": "No such statement (or not this holder's)."}})
    def statement(statement_id: str, record: TokenRecord = Depends(principal)) -> Response:
        with pool.reader() as reader:
            document = own_document(reader, record, statement_id)
        return Response(document, media_type="application/json")

    @app.get("/v1/statements/{statement_id}/{fmt}", tags=["holders"],
             summary="Download a statement: json (signed file), csv or pdf.",
             responses={404: {"description": "No such statement (or not this holder's), or no PDF in this build."}})
    def download(statement_id: str, fmt: Literal["json", "csv", "pdf"],
                 record: TokenRecord = Depends(principal)) -> Response:
        from ledger.services import close as closing

        with pool.reader() as reader:
            document = own_document(reader, record, statement_id)
            if fmt == "csv":
                body, media = render_csv(json.loads(document)), "text/csv; charset=utf-8"
            elif fmt == "json":
                signed = getattr(closing, "statement_file", None)
                body = signed(reader, statement_id) if signed else document.encode()
                media = "application/json"
            else:
                pdf = getattr(closing, "statement_pdf", None)
                if pdf is None:
                    raise ApiError(404, "pdf_unavailable", "PDF statements are not available in this build")
                body, media = pdf(reader, statement_id), "application/pdf"
        period_holder = json.loads(document)
        name = f"{period_holder['period']}_{period_holder['holder']['id']}_{period_holder['currency']}.{fmt}"
        return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/v1/royalties/monthly", tags=["holders"], summary="Royalties per month and source (the holder's chart).")
    def royalties(record: TokenRecord = Depends(principal)) -> dict:
        holder = None if record.role == AUDITOR else record.holder_id
        with pool.reader() as reader:
            documents = [json.loads(reader.statement_document(row[0])[0])
                         for row in reader.statement_rows(holder_id=holder)]
        return {"royalties": [{"period": r.period, "currency": r.currency, "source_id": r.source_id,
                               "amount": str(r.amount)} for r in monthly_by_source(documents)]}

    @app.get("/v1/signing-key", tags=["holders"], summary="The public key (PEM) that verifies statement signatures.",
             responses={404: {"description": "This service has no signing key."}})
    def signing_key() -> Response:
        try:
            from ledger.core.signing import load_key
        except ImportError:
            raise ApiError(404, "signing_unavailable", "statement signing is not available in this build") from None
        if not Path(settings.signing_key).exists():
            raise ApiError(404, "signing_unavailable", "this service has no statement signing key yet")
        return Response(load_key(settings.signing_key).public_pem(), media_type="application/x-pem-file")

    # -- auditors --------------------------------------------------------------------------

    @app.post("/v1/sql", tags=["auditors"], summary="Run one read-only SELECT on the latest snapshot.",
              responses={200: {"content": {m: {} for m in FORMATS.values()}},
                         400: {"description": "Refused: not exactly one SELECT, DuckDB refused it, or the result"
                                               " is larger than the byte limit (too_large)."},
                         408: {"description": "Stopped at the time limit."},
                         429: {"description": "Too many auditor queries at once; retry after Retry-After seconds."}})
    def sql(body: SqlRequest, record: TokenRecord = Depends(auditor)) -> Response:
        if not sql_slots.acquire(blocking=False):
            raise ApiError(429, "too_many_queries",
                           f"{settings.sql.max_concurrent} auditor queries are running; retry shortly",
                           {"Retry-After": str(SQL_RETRY_AFTER_S)})
        try:
            snapshot = latest_snapshot(settings.snapshots_dir)
            if snapshot is None:
                with pool.reader() as reader:
                    snapshot = publish_snapshot(reader, settings.snapshots_dir, now=now())
                metrics.snapshots_published.inc()
            try:
                result = run_query(snapshot.database, body.sql, limits, fmt=body.format)
            except SqlTimeoutError as exc:
                raise ApiError(408, "time_limit", str(exc)) from exc
            except SqlTooLargeError as exc:
                raise ApiError(400, "too_large", str(exc)) from exc
            except SqlRefusedError as exc:  # DuckDB's message is kept for the auditor, without filesystem paths
                raise ApiError(400, "refused", strip_paths(str(exc))) from exc
        finally:
            sql_slots.release()
        log.info("auditor query", extra={"token_id": record.token_id, "snapshot": snapshot.snapshot_id,
                                         "rows": result.table.num_rows, "sql": body.sql[:2000]})
        return Response(result.body, media_type=FORMATS[body.format], headers={
            "X-Learnright-Snapshot": snapshot.snapshot_id,
            "X-Learnright-Last-Entry": str(snapshot.last_entry_id),
            "X-Learnright-Truncated": "true" if result.truncated else "false",
        })

    @app.post("/v1/snapshots", tags=["auditors"], status_code=201, summary="Publish a snapshot of the ledger now.")
    def create_snapshot(record: TokenRecord = Depends(auditor)) -> dict:
        with pool.reader() as reader:
            snapshot = publish_snapshot(reader, settings.snapshots_dir, now=now())
        metrics.snapshots_published.inc()
        log.info("snapshot published", extra={"token_id": record.token_id, "snapshot": snapshot.snapshot_id})
        return snapshot.manifest()

    @app.get("/v1/snapshots", tags=["auditors"], summary="Published snapshots, oldest first.")
    def snapshots(record: TokenRecord = Depends(auditor)) -> dict:
        return {"snapshots": [s.manifest() for s in list_snapshots(settings.snapshots_dir)]}

    @app.get("/v1/snapshots/{snapshot_id}/{name:path}", tags=["auditors"],
             summary="Download a snapshot file: ledger.duckdb, manifest.json or parquet/<table>.parquet.")
    def snapshot_file(snapshot_id: str, name: str, record: TokenRecord = Depends(auditor)) -> Response:
        from fastapi.responses import FileResponse

        try:
            snapshot = read_snapshot(settings.snapshots_dir, snapshot_id)
        except SnapshotError as exc:
            log.info("snapshot not found", extra={"token_id": record.token_id, "detail": str(exc)})
            raise ApiError(404, NO_SNAPSHOT["error"], NO_SNAPSHOT["message"]) from exc
        manifest = snapshot.manifest()
        if name not in {"ledger.duckdb", "manifest.json", *manifest["parquet"].values()}:
            raise ApiError(404, "not_found", "this snapshot has no such file (ledger.duckdb, manifest.json or"
                                             " parquet/<table>.parquet)")
        return FileResponse(snapshot.directory / name, filename=Path(name).name)

    # -- the holder's page ---------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/app/")

    app.mount("/app", StaticFiles(directory=WEB, html=True), name="app")
    return app
