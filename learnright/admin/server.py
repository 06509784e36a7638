"""The running service's admin interface: HTTP on a unix socket that only its user may open.

Authentication is the socket file's permissions: it is bound inside a fresh private
directory (mode 0700), set to 0600 and only then renamed into place, so there is no
moment at which another user could connect (uvicorn's own ``uds=`` would leave it 0666).
The socket is removed on a clean stop; one left by a killed service (nothing answers on
it) is replaced at the next start, while one a live service answers on is refused.

Routes (JSON in, JSON out): ``GET /v1/ping`` names the ledger; ``POST /v1/close``;
``POST /v1/{operation}`` for each of :data:`learnright.admin.operations.OPERATIONS`.
Writes are queued onto the service's single writer (:meth:`LedgerService.submit`) and
answered once they ran; reads run on a reader cursor. A refused command answers 400
with ``{"error": code, "message": ...}``, as the HTTP API's errors do.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import uvicorn
from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse

from consumers.publisher import publish_statements
from consumers.replay import closes_now
from consumers.scheduler import PUBLISH_RETRY_S, LedgerService
from ground.errors import ConfigError, LearnrightError
from ground.settings import MAX_SOCKET_PATH, Settings, ensure_admin_runtime_dir
from learnright.admin.errors import error_to_json
from learnright.admin.operations import OPERATIONS, Tools, close_month
from learnright.api.context import ReaderPool
from ledger.storage.store import Ledger

log = logging.getLogger(__name__)


def create_admin_app(*, service: LedgerService, ledger: Ledger, settings: Settings) -> FastAPI:
    """The admin routes over the service's ledger. Make it on the thread that owns ``ledger`` (its readers are made here)."""
    app = FastAPI(title="Learnright admin", openapi_url=None, docs_url=None, redoc_url=None)
    pool = ReaderPool(ledger, size=2)
    consumer = service.consumer
    tools = Tools(catalog=consumer.catalog, registry=consumer.registry, limits=consumer.limits,
                  close_memory_limit=settings.close.memory_limit, close_workers=settings.close.workers)

    @app.exception_handler(LearnrightError)
    def refused(request: Request, exc: LearnrightError) -> JSONResponse:
        log.info("admin command refused", extra={"path": request.url.path, "code": exc.code})
        return JSONResponse(error_to_json(exc), status_code=400)

    @app.exception_handler(Exception)
    def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("admin command failed", exc_info=exc, extra={"path": request.url.path})
        return JSONResponse({"error": "internal", "message": f"the service failed the command ({type(exc).__name__});"
                                                             " see its log"}, status_code=500)

    @app.get("/v1/ping")
    def ping() -> dict:
        return {"db": str(settings.db.resolve()), "pid": os.getpid()}

    @app.post("/v1/close")
    def close(args: dict = Body(...)) -> dict:
        period = str(args["period"])
        out = Path(args["out"]) if args.get("out") else None
        now = datetime.now(timezone.utc)
        with pool.reader() as reader:
            catch_up = bool(args.get("catch_up", True)) and closes_now(reader, period, now)

        def job(writer: Ledger) -> dict:
            publish = (lambda: publish_statements(writer, settings)) if args.get("publish", True) else None
            answer = close_month(writer, tools, period=period, now=now, signer=service.signer, out=out,
                                 publish=publish, snapshots_dir=settings.snapshots_dir,
                                 keep_last=settings.snapshots.keep_last)
            if answer["problem"] is not None:  # the service sends the pending events later, as after its own close
                service.publish_retry_at = time.monotonic() + PUBLISH_RETRY_S
            answer["caught_up"] = catch_up
            return answer

        return service.submit(job, catch_up=catch_up).result()

    @app.post("/v1/{name}")
    def operation(name: str, args: dict | None = Body(None)) -> dict:
        args = args or {}
        found = OPERATIONS.get(name)
        if found is None:
            raise ConfigError(f"the admin interface has no command {name!r} (a CLI newer than the service?)")
        if found.writes:
            return service.submit(lambda writer: found.run(writer, tools, **args)).result()
        with pool.reader() as reader:
            return found.run(reader, tools, **args)

    return app


def bind_socket(path: Path) -> socket.socket:
    """A listening-ready unix socket at ``path``, mode 0600, never reachable by another user.

    Raises:
        ConfigError: the path is too long for a socket, is something else than a socket,
            or a live service already answers on it.
    """
    path = path.absolute()
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(f"admin socket path {path} is longer than {MAX_SOCKET_PATH} bytes, too long for a unix"
                          " socket; set LEARNRIGHT_ADMIN__SOCKET to a shorter one")
    ensure_admin_runtime_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(path)
    private = Path(tempfile.mkdtemp(prefix=".lr-admin-", dir=path.parent))  # 0700: nobody else can reach inside
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        inside = private / "s"
        sock.bind(str(inside))
        os.chmod(inside, 0o600)
        os.replace(inside, path)
    except BaseException:
        sock.close()
        raise
    finally:
        (private / "s").unlink(missing_ok=True)  # there only when binding failed: renamed away otherwise
        private.rmdir()
    return sock


def _clear_stale(path: Path) -> None:
    """Removes a socket nothing answers on (a killed service's); refuses a live one or a non-socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"admin socket path {path} exists and is not a socket; move it away or set"
                          " LEARNRIGHT_ADMIN__SOCKET")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.warning("replacing a stale admin socket (no service answers on it)", extra={"socket": str(path)})
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ConfigError(f"another service answers on the admin socket {path}; stop it, or set LEARNRIGHT_ADMIN__SOCKET")


class AdminServer:
    """uvicorn on the admin socket in a daemon thread; :meth:`stop` removes the socket it made."""

    def __init__(self, app: FastAPI, path: Path):
        self.path = path.absolute()
        self.sock = bind_socket(self.path)
        self.inode = self.path.stat().st_ino
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                                    server_header=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="learnright-admin", daemon=True)

    def start(self, timeout_s: float = 15.0) -> "AdminServer":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self._remove()
                raise ConfigError(f"the admin interface could not listen on {self.path}; see the log above")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        self._remove()

    def _remove(self) -> None:
        """Unlinks the socket if it is still the one this server bound (not a successor's)."""
        try:
            if self.path.stat().st_ino == self.inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
