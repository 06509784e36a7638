"""A throwaway PostgreSQL cluster on loopback, run from Debian's package: `learnright postgres up|down|status`.

What :mod:`learnright.broker` is to Kafka, this is to the ledger's DuckLake catalog. The
server binaries are Debian's (``/usr/lib/postgresql/<major>/bin``, the newest major
installed, unless ``postgres.bin_dir`` names others). ``state_dir`` holds:

* ``data/``: the cluster (initdb), listening on 127.0.0.1 only, with no Unix socket, and
  trusting every connection from 127.0.0.1 (pg_hba.conf has that one line);
* ``logs/postgres.log``: the server's log;
* ``postgres.json``: the port, role, database and binaries, so ``status`` and ``down``
  work from another process.

The cluster is for development and tests: ``fsync`` is off, so a machine crash (not a
process crash) can lose its recent commits. initdb and postgres refuse to run as root;
when this process is root they run as Debian's ``postgres`` user, which then owns
``state_dir`` and must be able to reach it (every parent searchable by it).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ground.errors import ConfigError, PostgresServerError

DEBIAN_ROOT = Path("/usr/lib/postgresql")
"""Debian's postgresql-<major> packages put their server binaries in ``<this>/<major>/bin``."""
SERVICE_USER = "postgres"
"""The user initdb and postgres run as when this process is root (Debian's package creates it)."""

STATE_FORMAT = 1
"""Version of ``postgres.json``; a reader refuses a newer one."""

_CONFIG = """
# learnright postgres up: a throwaway cluster on loopback.
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
fsync = off
full_page_writes = off
"""

_HBA = """\
# learnright postgres up: every role, every database, from 127.0.0.1 only, without a password.
host all all 127.0.0.1/32 trust
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresState:
    """A cluster of ``state_dir`` as ``postgres.json`` records it; ``pid`` None when it does not run."""

    state_dir: Path
    port: int
    database: str
    user: str
    bin_dir: Path
    pid: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def dsn(self) -> str:
        """The libpq connection string of the ledger's database (what DuckDB's postgres extension takes)."""
        return f"dbname={self.database} host=127.0.0.1 port={self.port} user={self.user}"

    @property
    def data(self) -> Path:
        return self.state_dir / "data"

    @property
    def log(self) -> Path:
        return self.state_dir / "logs" / "postgres.log"


def find_bin_dir(configured: Path | None = None) -> Path:
    """The directory of initdb and pg_ctl: ``configured``, or Debian's of the newest major version installed.

    Raises:
        ConfigError: no such binaries (Debian's postgresql package is not installed).
    """
    if configured is not None:
        if not all((configured / tool).is_file() for tool in ("initdb", "pg_ctl", "psql")):
            raise ConfigError(f"postgres.bin_dir {configured} lacks initdb, pg_ctl or psql"
                              " (LEARNRIGHT_POSTGRES__BIN_DIR)")
        return configured
    majors = sorted((int(path.parent.parent.name), path.parent) for path in DEBIAN_ROOT.glob("*/bin/initdb")
                    if path.parent.parent.name.isdigit())
    if not majors:
        raise ConfigError(f"no PostgreSQL server in {DEBIAN_ROOT}/<major>/bin: install Debian's postgresql"
                          " (`make postgres`, or apt-get install postgresql), or set LEARNRIGHT_POSTGRES__BIN_DIR")
    return majors[-1][1]


def read_state(state_dir: Path) -> PostgresState | None:
    """The cluster recorded in ``state_dir``, running or not; None if `up` never ran there."""
    state_dir = state_dir.resolve()
    path = state_dir / "postgres.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("format", 1) > STATE_FORMAT:
        raise ConfigError(f"{path} has format {data['format']}, newer than this Learnright knows ({STATE_FORMAT});"
                          " run the newer Learnright that wrote it, or start a fresh cluster")
    return PostgresState(state_dir=state_dir, port=data["port"], database=data["database"], user=data["user"],
                         bin_dir=Path(data["bin_dir"]), pid=_running_pid(state_dir / "data"))


def up(state_dir: Path, *, port: int = 0, database: str = "learnright", user: str = "learnright",
       bin_dir: Path | None = None, timeout_s: float = 60.0, fresh: bool = True) -> PostgresState:
    """Starts a cluster in ``state_dir`` with ``database`` created (or returns the one running there).

    With ``fresh`` (the default) the cluster starts empty (initdb), listening on ``port``
    (0: any free port); without it, a cluster that ran in ``state_dir`` before restarts on
    its old port with its data.

    Raises:
        ConfigError: no PostgreSQL binaries, or (as root) the ``postgres`` user cannot reach ``state_dir``.
        PostgresServerError: ``port`` is in use, or initdb, the start or createdb failed
            (their output and the log tail are included).
    """
    state_dir = state_dir.resolve()
    current = read_state(state_dir)
    if current is not None and current.running:
        return current
    owner = _service_user()
    if fresh or current is None:
        bins = find_bin_dir(bin_dir)
        current = _init(state_dir, port=_claim(port), database=database, user=user, bin_dir=bins, owner=owner)
        new_cluster = True
    else:
        new_cluster = False
    _run(owner, [str(current.bin_dir / "pg_ctl"), "start", "-D", str(current.data), "-l", str(current.log),
                 "-w", "-t", str(max(1, int(timeout_s)))], f"starting PostgreSQL in {current.data}", log=current.log)
    if new_cluster:
        _run(None, [str(current.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(current.port), "-U", user,
                    database], f"creating database {database!r}", log=current.log)
    state = read_state(state_dir)
    if state is None or not state.running:
        raise PostgresServerError(f"PostgreSQL in {state_dir} is not running after its start"
                                  f"\n--- tail of {current.log} ---\n{_tail(current.log)}")
    return state


def down(state_dir: Path, timeout_s: float = 60.0) -> bool:
    """Stops the cluster of ``state_dir`` (fast shutdown: sessions are ended); True if it ran.

    Raises:
        PostgresServerError: pg_ctl could not stop it (its output is included).
    """
    state = read_state(state_dir)
    if state is None or not state.running:
        return False
    _run(_service_user(), [str(state.bin_dir / "pg_ctl"), "stop", "-D", str(state.data), "-m", "fast", "-w",
                           "-t", str(max(1, int(timeout_s)))], f"stopping PostgreSQL in {state.data}", log=state.log)
    return True


def _init(state_dir: Path, *, port: int, database: str, user: str, bin_dir: Path,
          owner: pwd.struct_passwd | None) -> PostgresState:
    """Removes what ran in ``state_dir`` before, runs initdb and writes the config and ``postgres.json``."""
    state = PostgresState(state_dir=state_dir, port=port, database=database, user=user, bin_dir=bin_dir, pid=None)
    if state.data.exists():
        shutil.rmtree(state.data)
    state.log.parent.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        _check_reachable(state_dir, owner)
        for path in (state_dir, state.log.parent, *state.log.parent.iterdir()):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    _run(owner, [str(bin_dir / "initdb"), "-D", str(state.data), "-U", user, "--auth=trust", "--encoding=UTF8",
                 "--locale=C", "--no-sync"], f"initdb of {state.data}")
    with open(state.data / "postgresql.conf", "a") as conf:
        conf.write(_CONFIG.format(port=port))
    (state.data / "pg_hba.conf").write_text(_HBA)
    (state_dir / "postgres.json").write_text(json.dumps({
        "format": STATE_FORMAT, "port": port, "database": database, "user": user, "bin_dir": str(bin_dir),
    }, indent=2))
    return state


def _service_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (this process's) unless this process is root, then ``postgres``.

    Raises:
        ConfigError: this process is root and there is no ``postgres`` user.
    """
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError as exc:
        raise ConfigError(f"PostgreSQL refuses to run as root and there is no {SERVICE_USER!r} user to run it as;"
                          " install Debian's postgresql (it creates the user) or run as another user") from exc


def _check_reachable(state_dir: Path, owner: pwd.struct_passwd) -> None:
    """Raises unless ``owner`` may search every existing parent of ``state_dir``."""
    groups = set(os.getgrouplist(owner.pw_name, owner.pw_gid))
    for parent in state_dir.parents:
        mode = parent.stat()
        if (mode.st_mode & stat.S_IXOTH or (mode.st_uid == owner.pw_uid and mode.st_mode & stat.S_IXUSR)
                or (mode.st_gid in groups and mode.st_mode & stat.S_IXGRP)):
            continue
        raise ConfigError(f"PostgreSQL runs as the {owner.pw_name!r} user (it refuses root) and cannot reach"
                          f" {state_dir}: {parent} is not searchable by it; choose another"
                          " LEARNRIGHT_POSTGRES__STATE_DIR")


def _run(owner: pwd.struct_passwd | None, command: list[str], what: str, log: Path | None = None) -> None:
    """Runs ``command`` (as ``owner`` when given); raises with its output if it fails."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
    kwargs: dict = {}
    if owner is not None:
        kwargs = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": [], "cwd": "/"}
        env["HOME"] = owner.pw_dir
    result = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, **kwargs)
    if result.returncode != 0:
        tail = f"\n--- tail of {log} ---\n{_tail(log)}" if log is not None else ""
        raise PostgresServerError(f"{what} failed ({' '.join(command)}):\n{result.stdout[-3000:]}"
                                  f"{result.stderr[-3000:]}{tail}")


def _running_pid(data: Path) -> int | None:
    """The postmaster's pid from ``data/postmaster.pid`` if that process lives."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        return None if re.search(r"\nState:\tZ", Path(f"/proc/{pid}/status").read_text()) else pid
    except OSError:
        return pid


def _claim(port: int) -> int:
    """``port`` if it can be bound on 127.0.0.1 now, a free port for 0.

    Raises:
        PostgresServerError: something else listens on ``port``.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PostgresServerError(
                f"port {port} on 127.0.0.1 is in use, so PostgreSQL cannot listen there; stop what holds it"
                " (`learnright postgres status` shows a cluster of this project) or set LEARNRIGHT_POSTGRES__PORT"
                " to another port (0: any free one)"
            ) from exc
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
