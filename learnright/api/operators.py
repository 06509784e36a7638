"""For operators: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

import ground
from ground.metrics import CONTENT_TYPE
from learnright.api.auth import auditor
from learnright.api.context import ApiContext, context
from ledger.services.tokens import TokenRecord

log = logging.getLogger("learnright.http")
router = APIRouter(tags=["operators"])


@router.get("/healthz", summary="Liveness: the process answers.")
def healthz() -> dict:
    return {"status": "ok", "version": ground.__version__}


@router.get("/readyz", summary="Readiness: the ledger reads and the consumer is assigned and not stalled.")
def readyz(ctx: ApiContext = Depends(context)) -> JSONResponse:
    try:
        with ctx.pool.reader() as reader:
            reader.latest_close()
        reason = ctx.readiness()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the detail goes to the log
        reference = uuid.uuid4().hex[:12]
        log.warning("readiness check failed", extra={"error": type(exc).__name__, "detail": str(exc),
                                                     "reference": reference})
        reason = f"the readiness check failed, reference {reference}"
    if reason:
        return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics (text exposition format); auditor token.",
            responses={401: {"description": "No valid token."}, 403: {"description": "Not an auditor token."}})
def prometheus(record: TokenRecord = Depends(auditor), ctx: ApiContext = Depends(context)) -> Response:
    return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE)
