"""Request metrics and the request log, as one ASGI middleware.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: that one runs the
app in a task group of its own, which turns an error raised while a body is read (413,
408, see :mod:`learnright.api.limits`) into an exception group no handler matches.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ground.metrics import Metrics

log = logging.getLogger("learnright.http")

QUIET = ("/metrics", "/healthz", "/readyz", "/app")
"""Routes counted in the metrics but not logged request by request."""


class Observer:
    """Counts and times every request by route template; logs all but the :data:`QUIET` ones."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app fails before it starts a response
        scope.setdefault("state", {})

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or ("/app" if scope["path"].startswith("/app") else "unmatched")
        self.metrics.http_requests.labels(route=template, method=scope["method"], status=str(status)).inc()
        self.metrics.http_seconds.labels(route=template).observe(elapsed)
        if template not in QUIET:
            log.info("http request", extra={"method": scope["method"], "route": template, "status": status,
                                            "duration_ms": round(elapsed * 1000, 2),
                                            "token_id": scope["state"].get("token_id")})


def install_observer(app: FastAPI, metrics: Metrics) -> None:
    """Runs :class:`Observer` around every request of ``app`` (outside the middlewares added before)."""
    app.add_middleware(Observer, metrics=metrics)
