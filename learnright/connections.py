"""HTTP connections: uvicorn's h11 protocol with a deadline on each request's head.

uvicorn times out only an idle keep-alive connection (``timeout_keep_alive``), and the
first byte received cancels that timer; neither uvicorn nor h11 has a deadline for the
request line and headers. A client that sends half a request line and stalls would hold
its connection, and a file descriptor, for as long as it likes. This protocol closes a
connection whose request head is not complete ``header_timeout_s`` after it began: after
the connection opened, or after the first byte of the next request on a kept-alive one.
The deadline is absolute, so trickling a byte at a time does not extend it.

The body has its own deadline, enforced where it is read (:mod:`learnright.api.limits`),
so that it can be answered ``408`` in the API's JSON; the idle time between requests is
uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HeadDeadlineProtocol"]

log = logging.getLogger("learnright.http")


class HeadDeadlineProtocol(H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request head is late (see the module docstring).

    Made per connection by uvicorn; pass it as ``functools.partial(HeadDeadlineProtocol,
    header_timeout_s=...)``.
    """

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Arms the deadline when part of a request head is waiting, clears it once the head is complete."""
        if self.conn.their_state is not h11.IDLE:
            self._disarm()
        elif self.conn.trailing_data[0]:
            self._arm()

    def _arm(self) -> None:
        if self.head_deadline is None:
            self.head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_timed_out(self) -> None:
        self.head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("closing a connection: no complete request head in time",
                     extra={"client": "%s:%d" % self.client if self.client else None,
                            "header_timeout_s": self.header_timeout_s})
            self.transport.close()
