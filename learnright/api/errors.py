"""How the API answers an error: ``{"error": ..., "message": ...}`` with a status code.

A route raises :class:`ApiError` for an answer it means to give (401, 403, 404, 408, 413,
429). The framework's own refusals come in the same shape: ``404 not_found`` for a path
with no route, ``405 method_not_allowed`` (with ``Allow``), ``422 invalid_request`` for
a malformed parameter or body. Every other error, a :class:`~ground.errors.LearnrightError`
or anything unexpected from a route, a dependency or a response before it starts, is
answered ``500 internal`` with ``internal error, reference <ref>``: its detail (paths,
values) and, when unexpected, its traceback stay in the log under that reference. An
error after a response has started cannot be answered; it is logged the same way and
the connection is closed.
"""

from __future__ import annotations

import http
import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ground.errors import LearnrightError

log = logging.getLogger("learnright.http")


class ApiError(Exception):
    """An answer a route means to give: ``status`` with ``{"error": error, "message": message}`` and ``headers``."""

    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None):
        self.status, self.error, self.message, self.headers = status, error, message, headers or {}


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.error, "message": exc.message}, status_code=exc.status, headers=exc.headers)


HTTP_ERRORS = {404: ("not_found", "nothing here; the API's paths are listed at /docs"),
               405: ("method_not_allowed", "this path does not take this method (see Allow)")}
"""The answer to the framework's own refusals, by status, when it gives only the status's name."""
PHRASES = {status.value: status.phrase for status in http.HTTPStatus}


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """The framework's refusals (no such route, wrong method) in the documented shape."""
    phrase = PHRASES.get(exc.status_code, str(exc.status_code))
    error, message = HTTP_ERRORS.get(exc.status_code, (phrase.lower().replace(" ", "_").replace("-", "_"), phrase))
    if exc.detail != phrase:
        message = str(exc.detail)
    return JSONResponse({"error": error, "message": message}, status_code=exc.status_code, headers=exc.headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A malformed parameter or body: every problem, each with where it is (``body.format: ...``)."""
    problems = "; ".join(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
                         for problem in exc.errors())
    return JSONResponse({"error": "invalid_request", "message": problems or "the request is malformed"},
                        status_code=422)


def internal_error(path: str, exc: BaseException, *, unexpected: bool) -> JSONResponse:
    """The referenced 500; the detail (and, when ``unexpected``, the traceback) goes to the log only."""
    reference = uuid.uuid4().hex[:12]
    extra = {"path": path, "error": type(exc).__name__, "detail": str(exc), "reference": reference}
    if unexpected:
        log.error("request failed unexpectedly", extra=extra, exc_info=exc)
    else:
        log.warning("request failed", extra=extra)
    return JSONResponse({"error": "internal", "message": f"internal error, reference {reference}"},
                        status_code=500)


async def learnright_error(request: Request, exc: LearnrightError) -> JSONResponse:
    return internal_error(request.url.path, exc, unexpected=False)


class UnexpectedErrors:
    """ASGI middleware: any exception that escapes the routes is answered as a referenced 500.

    Starlette's own last resort answers plain text and raises again; this answers the
    documented JSON and ends there, so the error is logged once, under its reference.
    A client that went away before its body was read is logged and left alone.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except ClientDisconnect:
            log.info("client went away before its request was read", extra={"path": scope["path"]})
        except Exception as exc:  # noqa: BLE001 - answered with a reference; the detail is logged
            response = internal_error(scope["path"], exc, unexpected=True)
            if not started:  # once started, the server closes the connection on the incomplete answer
                await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Answers every error in the documented shape (see the module docstring).

    Adds :class:`UnexpectedErrors` as a middleware: call this before adding the middlewares
    that must see its 500s (the request metrics).
    """
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(LearnrightError, learnright_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(UnexpectedErrors)
