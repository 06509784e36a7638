"""How the API answers an error: ``{"error": ..., "message": ...}`` with a status code.

A route raises :class:`ApiError` for an answer it means to give (401, 403, 404, 408, 429).
Any other :class:`~ground.errors.LearnrightError` is answered 500 with a reference: its
detail (paths, values) stays in the log, under that reference.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ground.errors import LearnrightError

log = logging.getLogger("learnright.http")


class ApiError(Exception):
    """An answer a route means to give: ``status`` with ``{"error": error, "message": message}`` and ``headers``."""

    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None):
        self.status, self.error, self.message, self.headers = status, error, message, headers or {}


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.error, "message": exc.message}, status_code=exc.status, headers=exc.headers)


async def learnright_error(request: Request, exc: LearnrightError) -> JSONResponse:
    # The detail (paths, values) stays in the log; the client gets a reference to it.
    reference = uuid.uuid4().hex[:12]
    log.warning("request failed", extra={"path": request.url.path, "error": type(exc).__name__,
                                         "detail": str(exc), "reference": reference})
    return JSONResponse({"error": "internal", "message": f"internal error, reference {reference}"},
                        status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Answers :class:`ApiError` as it says and any other :class:`LearnrightError` as a referenced 500."""
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(LearnrightError, learnright_error)
