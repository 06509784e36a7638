"""Request metrics and the request log, as one HTTP middleware."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request

log = logging.getLogger("learnright.http")

QUIET = ("/metrics", "/healthz", "/readyz", "/app")
"""Routes counted in the metrics but not logged request by request."""


async def observe(request: Request, call_next):
    """Counts and times every request by route template; logs all but the :data:`QUIET` ones."""
    metrics = request.app.state.context.metrics
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", None) or ("/app" if request.url.path.startswith("/app") else "unmatched")
    elapsed = time.perf_counter() - started
    metrics.http_requests.labels(route=template, method=request.method, status=str(response.status_code)).inc()
    metrics.http_seconds.labels(route=template).observe(elapsed)
    if template not in QUIET:
        log.info("http request", extra={"method": request.method, "route": template, "status": response.status_code,
                                        "duration_ms": round(elapsed * 1000, 2),
                                        "token_id": getattr(request.state, "token_id", None)})
    return response


def install_observer(app: FastAPI) -> None:
    """Runs :func:`observe` around every request of ``app``."""
    app.middleware("http")(observe)
