"""For auditors: one read-only SELECT on the latest snapshot, and the snapshots themselves."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, ValidationError

from learnright.api.auth import auditor
from learnright.api.context import ApiContext, context
from learnright.api.downloads import content_disposition
from learnright.api.errors import ApiError
from ledger.services.tokens import TokenRecord
from ledger.storage.snapshots import (Snapshot, SnapshotError, holding, list_snapshots, publish_snapshot, read_snapshot,
                                      snapshot_after_close, snapshot_at_close)
from ledger.storage.sql import FORMATS, SqlRefusedError, SqlTimeoutError, SqlTooLargeError, run_query, strip_paths

log = logging.getLogger("learnright.http")
router = APIRouter(tags=["auditors"])
NO_SNAPSHOT = {"error": "not_found", "message": "no such snapshot"}
SQL_RETRY_AFTER_S = 1
SNAPSHOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
"""The shape of a snapshot id (``20260602T000000000000Z-e42``); any other id is not looked up on disk."""


class SqlRequest(BaseModel):
    sql: str = Field(..., description="Exactly one SELECT (DuckDB SQL).", examples=["SELECT * FROM audit_reconciliation"])
    format: Literal["json", "csv", "arrow"] = Field("json", description="json, csv or arrow (Arrow IPC stream).")
    at_close: str | None = Field(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", examples=["2026-03"],
                                 description="Answer as the close of this period left the ledger: a lake at that"
                                             " close's snapshot (DuckLake time travel), a file at the snapshot"
                                             " published at that close. 404 when the period has no close.")


async def sql_request(request: Request, record: TokenRecord = Depends(auditor)) -> SqlRequest:
    """The body of ``POST /v1/sql``, read only once the auditor's token has passed.

    Read here rather than as a body parameter, which FastAPI reads before any dependency:
    a request without a valid token is refused before one byte of its body is read (the
    body's cap and deadline: :mod:`learnright.api.limits`).
    """
    body = await request.body()
    try:
        return SqlRequest.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**problem, "loc": ("body", *problem["loc"])}
                                      for problem in exc.errors(include_url=False)]) from exc


@router.post("/v1/sql", summary="Run one read-only SELECT on the latest snapshot.",
             responses={200: {"content": {m: {} for m in FORMATS.values()}},
                        400: {"description": "Refused: not exactly one SELECT, DuckDB refused it, or the result"
                                              " is larger than the byte limit (too_large)."},
                        408: {"description": "Stopped at the time limit."},
                        413: {"description": "The body is larger than http.max_body_bytes."},
                        429: {"description": "Too many auditor queries at once; retry after Retry-After seconds."}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": SqlRequest.model_json_schema()}}}})
def sql(body: SqlRequest = Depends(sql_request), record: TokenRecord = Depends(auditor),
        ctx: ApiContext = Depends(context)) -> Response:
    if not ctx.sql_slots.acquire(blocking=False):
        raise ApiError(429, "too_many_queries",
                       f"{ctx.settings.sql.max_concurrent} auditor queries are running; retry shortly",
                       {"Retry-After": str(SQL_RETRY_AFTER_S)})
    try:
        location = ctx.settings.ledger_at
        if body.at_close is not None and not isinstance(location, Path):
            return _at_lake_close(body, record, ctx, location)
        pick = (lambda: _at_file_close(ctx, body.at_close)) if body.at_close else (lambda: _after_last_close(ctx))
        with holding(pick) as snapshot:  # not pruned while the query reads it
            result = _answer(lambda: run_query(snapshot.database, body.sql, ctx.limits, fmt=body.format))
    finally:
        ctx.sql_slots.release()
    log.info("auditor query", extra={"token_id": record.token_id, "snapshot": snapshot.snapshot_id,
                                     "rows": result.table.num_rows, "sql": body.sql[:2000]})
    content = result.body
    if body.format == "json":  # one more member after "truncated"; the answer's other members are unchanged
        content = (content[:content.rindex(b"}")] + b', "snapshot": '
                   + json.dumps(answered_from(snapshot)).encode() + b"}\n")
    last = snapshot.last_close
    return Response(content, media_type=FORMATS[body.format], headers={
        "X-Learnright-Snapshot": snapshot.snapshot_id,
        "X-Learnright-Snapshot-Created": snapshot.created_at.isoformat(),
        "X-Learnright-Last-Entry": str(snapshot.last_entry_id),
        "X-Learnright-Last-Close": "none" if last is None else f"{last.period}; root={last.root or 'none'}",
        "X-Learnright-Truncated": "true" if result.truncated else "false",
    })


def _answer(run):
    """Runs an auditor's query; its refusals as the API answers them."""
    try:
        return run()
    except SqlTimeoutError as exc:
        raise ApiError(408, "time_limit", str(exc)) from exc
    except SqlTooLargeError as exc:
        raise ApiError(400, "too_large", str(exc)) from exc
    except SqlRefusedError as exc:  # DuckDB's message is kept for the auditor, without filesystem paths
        raise ApiError(400, "refused", strip_paths(str(exc))) from exc


def _at_file_close(ctx: ApiContext, period: str) -> Snapshot:
    try:
        return snapshot_at_close(ctx.settings.snapshots_dir, period)
    except SnapshotError as exc:
        raise ApiError(404, "not_found", f"no snapshot was published at a close of {period}") from exc


def _at_lake_close(body: SqlRequest, record: TokenRecord, ctx: ApiContext, location) -> Response:
    """Answers from the lake as the close of ``body.at_close`` committed it (time travel)."""
    from ledger.storage.lake import closed_periods, lake_sandbox

    if body.at_close not in closed_periods(location):
        raise ApiError(404, "not_found", f"no close of {body.at_close} in the ledger")
    result = _answer(lambda: run_query(Path("lake"), body.sql, ctx.limits, fmt=body.format,
                                       connect=lambda: lake_sandbox(location, body.at_close, ctx.limits)))
    log.info("auditor query", extra={"token_id": record.token_id, "at_close": body.at_close,
                                     "rows": result.table.num_rows, "sql": body.sql[:2000]})
    content = result.body
    if body.format == "json":
        content = content[:content.rindex(b"}")] + b', "at_close": ' + json.dumps(body.at_close).encode() + b"}\n"
    return Response(content, media_type=FORMATS[body.format], headers={
        "X-Learnright-At-Close": body.at_close,
        "X-Learnright-Truncated": "true" if result.truncated else "false",
    })


def answered_from(snapshot: Snapshot) -> dict:
    """What a JSON answer says of the snapshot it came from (its ``"snapshot"`` member)."""
    last = snapshot.last_close
    return {"snapshot_id": snapshot.snapshot_id, "created_at": snapshot.created_at.isoformat(),
            "last_entry_id": snapshot.last_entry_id, "last_close": None if last is None else last.to_json()}


@router.post("/v1/snapshots", status_code=201, summary="Publish a snapshot of the ledger now.")
def create_snapshot(record: TokenRecord = Depends(auditor), ctx: ApiContext = Depends(context)) -> dict:
    snapshot = _publish(ctx)
    log.info("snapshot published", extra={"token_id": record.token_id, "snapshot": snapshot.snapshot_id})
    return snapshot.manifest()


@router.get("/v1/snapshots", summary="Published snapshots, oldest first.")
def snapshots(record: TokenRecord = Depends(auditor), ctx: ApiContext = Depends(context)) -> dict:
    return {"snapshots": [s.manifest() for s in list_snapshots(ctx.settings.snapshots_dir)]}


@router.get("/v1/snapshots/{snapshot_id}/{name:path}",
            summary="Download a snapshot file: ledger.duckdb, manifest.json or parquet/<table>.parquet.")
def snapshot_file(snapshot_id: str, name: str, record: TokenRecord = Depends(auditor),
                  ctx: ApiContext = Depends(context)) -> Response:
    try:
        if not SNAPSHOT_ID.fullmatch(snapshot_id):
            raise SnapshotError(f"{snapshot_id[:200]!r} is not a snapshot id")
        snapshot = read_snapshot(ctx.settings.snapshots_dir, snapshot_id)
    except SnapshotError as exc:
        log.info("snapshot not found", extra={"token_id": record.token_id, "detail": str(exc)})
        raise ApiError(404, NO_SNAPSHOT["error"], NO_SNAPSHOT["message"]) from exc
    manifest = snapshot.manifest()
    if name not in {"ledger.duckdb", "manifest.json", *manifest["parquet"].values()}:
        raise ApiError(404, "not_found", "this snapshot has no such file (ledger.duckdb, manifest.json or"
                                         " parquet/<table>.parquet)")
    return FileResponse(snapshot.directory / name,
                        headers={"Content-Disposition": content_disposition(Path(name).name)})


def _publish(ctx: ApiContext) -> Snapshot:
    """Publishes a snapshot of the ledger now, through a reader, and counts it."""
    with ctx.pool.reader() as reader:
        snapshot = publish_snapshot(reader, ctx.settings.snapshots_dir, now=ctx.now(),
                                    keep_last=ctx.settings.snapshots.keep_last)
    ctx.metrics.snapshots_published.inc()
    return snapshot


def _after_last_close(ctx: ApiContext) -> Snapshot:
    """The latest snapshot if it covers the ledger's last close, else a new one published now (and counted).

    So an auditor's query never answers from before the last close, even in the moment
    between a close and the service's watcher publishing after it.
    """
    with ctx.pool.reader() as reader:
        snapshot, published = snapshot_after_close(reader, ctx.settings.snapshots_dir, now=ctx.now(),
                                                   keep_last=ctx.settings.snapshots.keep_last)
    if published:
        ctx.metrics.snapshots_published.inc()
    return snapshot
