"""The HTTP server against slow and oversized requests, over real sockets: `HttpServer` (uvicorn) on port 0.

Waits are bounds, not timings: each deadline is 1 s here, and a test waits up to 30 s for
the server to act.
"""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone

import httpx
import pytest

from ground.metrics import Metrics
from ground.settings import Settings
from learnright.api import create_app
from learnright.server import HttpServer
from ledger.services.tokens import AUDITOR, create_token
from ledger.storage.store import Ledger
from tests.learnright.books import book_two_holders

CAP = 4096
BOUND_S = 30.0


@pytest.fixture
def server(tmp_path, license_book_text):
    """A served two-holder book with 1 s deadlines and a 4 KiB body cap; yields (port, auditor token)."""
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    base = Settings()
    http = base.http.model_copy(update={"port": 0, "header_timeout_s": 1.0, "body_timeout_s": 1.0,
                                        "keep_alive_s": 1.0, "max_body_bytes": CAP})
    settings = base.model_copy(update={"db": path, "snapshots_dir": tmp_path / "snapshots",
                                       "signing_key": tmp_path / "no-key.pem", "http": http})
    with Ledger.open(path) as ledger:
        token = create_token(ledger, role=AUDITOR, holder_id=None, now=datetime.now(timezone.utc)).token
        served = HttpServer(create_app(ledger=ledger, settings=settings, metrics=Metrics()), "127.0.0.1", 0,
                            http=http).start()
        try:
            yield served.port, token
        finally:
            served.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND_S)
    sock.settimeout(BOUND_S)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without answering (got {data!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection in the middle of its answer"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closes ``sock`` (within the bound); False if it is still open then."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def request(method: str, path: str, *, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: learnright", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_request_head_that_stalls_is_closed(server):
    port, _ = server
    half_a_line, silent, kept_alive = connect(port), connect(port), connect(port)
    try:
        half_a_line.sendall(b"GET /heal")
        kept_alive.sendall(request("GET", "/healthz"))
        assert read_answer(kept_alive)[0] == 200
        kept_alive.sendall(b"GET /v1/sta")  # the next request on the same connection stalls too
        assert closed_by_server(half_a_line), "a half-sent request line is still open"
        assert closed_by_server(silent), "a connection that never sent a byte is still open"
        assert closed_by_server(kept_alive), "a stalled second request on a kept-alive connection is still open"
    finally:
        for sock in (half_a_line, silent, kept_alive):
            sock.close()
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=BOUND_S).status_code == 200


def test_an_idle_keep_alive_connection_is_closed(server):
    port, _ = server
    with connect(port) as sock:
        sock.sendall(request("GET", "/healthz"))
        status, headers, _ = read_answer(sock)
        assert status == 200 and headers.get("connection") != "close"
        sock.sendall(request("GET", "/healthz"))  # kept alive: a second request on it is answered
        assert read_answer(sock)[0] == 200
        assert closed_by_server(sock), "an idle kept-alive connection is still open"


def test_an_anonymous_body_is_refused_401_before_it_is_read(server):
    """200 MB declared, 1 KiB sent: the answer comes without waiting for the rest."""
    port, _ = server
    with connect(port) as sock:
        sock.sendall(request("POST", "/v1/sql", headers={"Content-Type": "application/json",
                                                         "Content-Length": str(200 * 2**20)}) + b" " * 1024)
        status, headers, body = read_answer(sock)
        assert status == 401 and json.loads(body)["error"] == "unauthorized"
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


def test_an_authenticated_body_past_the_cap_is_refused_413(server):
    port, token = server
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with connect(port) as sock:  # declared too large: refused before one byte is read
        sock.sendall(request("POST", "/v1/sql", headers={**auth, "Content-Length": str(CAP + 1)}))
        status, headers, body = read_answer(sock)
        assert (status, json.loads(body)["error"], headers["connection"]) == (413, "body_too_large", "close")
        assert closed_by_server(sock)
    with connect(port) as sock:  # chunked, announcing 1 MiB: cut off once it passes the cap
        sock.sendall(request("POST", "/v1/sql", headers={**auth, "Transfer-Encoding": "chunked"})
                     + b"100000\r\n" + b'{"sql": "SELECT 1", "pad": "' + b"x" * CAP)
        status, headers, body = read_answer(sock)
        assert (status, json.loads(body)["error"], headers["connection"]) == (413, "body_too_large", "close")
        assert closed_by_server(sock)
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/sql", json={"sql": "SELECT 42 AS n"}, headers=auth,
                        timeout=BOUND_S)
    assert answer.status_code == 200 and answer.json()["rows"] == [[42]]


def test_a_body_that_stalls_is_answered_408(server):
    port, token = server
    with connect(port) as sock:
        sock.sendall(request("POST", "/v1/sql", headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "application/json", "Content-Length": "100"})
                     + b'{"sql": ')
        status, headers, body = read_answer(sock)
        assert status == 408 and json.loads(body) == {
            "error": "body_timeout",
            "message": "the request body did not arrive within 1 s (LEARNRIGHT_HTTP__BODY_TIMEOUT_S)"}
        assert headers["connection"] == "close"
        assert closed_by_server(sock)
