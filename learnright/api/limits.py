"""Request bodies: a size cap and a deadline, both enforced as the body is read.

:class:`BodyLimits` wraps the app's ``receive``. Nothing reads a body before the route's
token check (a route that takes a body reads it in a dependency of its auth dependency),
so a request without a valid token is answered 401 whatever it declares or sends, and
its body is never read. When a route does read the body:

* a ``Content-Length`` over ``max_bytes`` is refused ``413 body_too_large`` before one
  byte is read; a body without a length (chunked) is counted as it arrives and refused
  at the first message that takes it over the cap;
* a body that has not arrived ``timeout_s`` after its headers is refused ``408
  body_timeout``.

A response given while the body is still unread (a 401, a 413, a 408) carries
``Connection: close``, so the server closes the connection instead of reading the rest.
"""

from __future__ import annotations

import time

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from learnright.api.errors import ApiError

__all__ = ["BodyLimits"]

CLOSE = (b"connection", b"close")


class BodyLimits:
    """ASGI middleware: caps each request body at ``max_bytes`` and gives it ``timeout_s`` to arrive."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _Body(scope, receive, max_bytes=self.max_bytes, deadline=time.monotonic() + self.timeout_s,
                     timeout_s=self.timeout_s)

        async def send_closing(message: Message) -> None:
            headers = message.get("headers", [])
            if message["type"] == "http.response.start" and not body.complete and CLOSE not in headers:
                message = {**message, "headers": [*headers, CLOSE]}
            await send(message)

        await self.app(scope, body.receive, send_closing)


class _Body:
    """One request's body as the app reads it: counted, capped and timed."""

    def __init__(self, scope: Scope, receive: Receive, *, max_bytes: int, deadline: float, timeout_s: float):
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        self.declared = int(length) if length is not None and length.isdigit() else None
        self.complete = not (self.declared or "transfer-encoding" in headers)
        """True once the whole body is read (at once for a request without one)."""
        self.inner = receive
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.received = 0

    async def receive(self) -> Message:
        if self.complete:
            return await self.inner()
        if self.declared is not None and self.declared > self.max_bytes:
            raise self._too_large()
        with anyio.move_on_after(max(0.0, self.deadline - time.monotonic())):
            message = await self.inner()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.max_bytes:
                    raise self._too_large()
                self.complete = not message.get("more_body", False)
            return message
        raise ApiError(408, "body_timeout", f"the request body did not arrive within {self.timeout_s:g} s"
                                            " (LEARNRIGHT_HTTP__BODY_TIMEOUT_S)")

    def _too_large(self) -> ApiError:
        return ApiError(413, "body_too_large", f"the request body is larger than the limit of {self.max_bytes} bytes"
                                               " (LEARNRIGHT_HTTP__MAX_BODY_BYTES)")
