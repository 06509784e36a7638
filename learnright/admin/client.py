"""How a CLI command finds the running service of its ledger, and runs through it or on the file.

:func:`run` is the one way in: when a service answers on the ledger's admin socket
(``settings.admin_socket``) the operation goes to it; when none does (no socket, or a
stale one a killed service left), the command opens the file itself, as it always did.
Either way the same operation (:mod:`learnright.admin.operations`) produces the answer.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from ground.errors import ConfigError
from ground.settings import Settings, ensure_admin_runtime_dir
from learnright.admin.errors import AdminUnavailableError, error_from_json
from learnright.admin.operations import OPERATIONS, Tools
from ledger.storage.store import Ledger

PING_TIMEOUT_S = 5.0
"""How long a service has to say which ledger it serves before the CLI treats it as absent."""


class AdminClient:
    """A connection to one running service's admin socket (use :func:`find_service`)."""

    def __init__(self, path: Path, timeout_s: float):
        self.path = path
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://learnright-admin",
                                 timeout=httpx.Timeout(timeout_s, connect=PING_TIMEOUT_S))

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def ping(self) -> dict:
        return self.http.get("/v1/ping", timeout=PING_TIMEOUT_S).raise_for_status().json()

    def call(self, operation: str, args: dict) -> dict:
        """The service's answer to ``operation``; its refusal raised as the error it names.

        Raises:
            LearnrightError: the service refused or failed the command (its code and message).
            AdminUnavailableError: the service stopped answering before it finished.
        """
        try:
            answer = self.http.post(f"/v1/{operation}", json=args)
        except httpx.TransportError as exc:
            raise AdminUnavailableError(
                f"the running service stopped answering on {self.path} during `{operation}` ({exc}); whether it ran"
                " is unknown: check with a list command once it is back") from exc
        if answer.status_code != 200:
            raise error_from_json(answer.json())
        return answer.json()


def find_service(settings: Settings) -> AdminClient | None:
    """A client of the service that serves ``settings.db``, or None when none answers on its admin socket.

    Raises:
        ConfigError: a service answers on the socket but serves another ledger file.
    """
    path = settings.admin_socket
    if not path.exists():
        return None
    ensure_admin_runtime_dir(path)
    client = AdminClient(path, settings.admin.timeout_s)
    try:
        served = Path(client.ping()["db"])
    except (httpx.HTTPError, OSError, KeyError, ValueError):  # a stale socket: nothing (sane) answers
        client.http.close()
        return None
    if served != settings.db.resolve():
        client.http.close()
        raise ConfigError(f"the service on admin socket {path} serves {served}, not {settings.db.resolve()};"
                          " point --db (or LEARNRIGHT_ADMIN__SOCKET) at the right one")
    return client


def run(settings: Settings, operation: str, **args: object) -> dict:
    """Runs ``operation`` through the running service if one answers, else on the ledger file.

    Raises:
        LedgerLockedError: no service answers and another process holds the file; the
            message says what to do.
    """
    client = find_service(settings)
    if client is not None:
        with client:
            return client.call(operation, args)
    found = OPERATIONS[operation]
    with Ledger.open(settings.ledger_at, read_only=not found.writes) as ledger:
        return found.run(ledger, Tools.for_settings(settings), **args)
