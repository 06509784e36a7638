"""Auditor SQL: exactly one read-only SELECT, in a sandbox, within time and row limits.

Two independent walls keep a query from changing anything or reading outside the ledger:
  1. DuckDB's own parser (:func:`duckdb.extract_statements`) must find exactly one
     statement, of type SELECT (``FROM t``, ``WITH ... SELECT``, ``DESCRIBE`` and
     ``SUMMARIZE`` parse as SELECT too). INSERT, COPY, ATTACH, INSTALL, LOAD, SET,
     PRAGMA, CALL and several statements are refused before anything runs. A SELECT
     can still hide a data-changing CTE (``WITH x AS (DELETE ... RETURNING 1) SELECT``),
     so the parse tree (``json_serialize_sql``) is walked too: every query node in it
     must be a SELECT, a set operation or a CTE.
  2. The query runs on its own connection to a DuckDB file opened read-only, with
     external access disabled (no files, no network: ``read_text('/etc/passwd')`` is
     refused), extension autoloading and autoinstall off, and the configuration locked
     so the query cannot loosen any of it.

For an auditor (``POST /v1/sql``, ``learnright sql``) the file is always a published snapshot
(:mod:`ledger.storage.snapshots`, :func:`~ledger.storage.snapshots.snapshot_for_query`), never the
ledger file, which holds the API tokens. It is opened here, read-only, apart from the
:class:`~ledger.storage.store.Ledger` that writes. A timer interrupts the connection at the
time limit; rows past the row limit are not read; a result past the byte limit is
refused while it is fetched (DuckDB's memory limit does not bound result buffers).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv

from ground.errors import TerminalError
from ground.settings import SqlSettings
from ledger.errors import LedgerLockedError

FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8",
           "arrow": "application/vnd.apache.arrow.stream"}
READ_ONLY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "CTE_NODE", "RECURSIVE_CTE_NODE"})
BATCH_ROWS = 64
"""Rows per fetched Arrow batch: the byte limit is checked after each one, so a batch of very
wide rows (``repeat('x', 10000000)``) is refused after 64 rows, not after 1024 were copied."""
_configuring = threading.Lock()
T = TypeVar("T")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s'\"/]+(?:/[^\s'\"/]*)+")


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
POOL_THREADS = 32
"""Threads of one priority's pool: more than the API lets run at once (``sql.max_concurrent``)."""


def _lower_priority(nice: int) -> None:
    """A pool thread's initializer: this thread's nice value raised by ``nice`` (Linux keeps one per
    thread, so the service's other threads keep theirs; a raised value cannot be lowered again
    without privileges, which is why the threads are kept for auditor queries only)."""
    if sys.platform == "linux":
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


def at_auditor_priority(nice: int, run: Callable[[], T]) -> T:
    """``run()`` on a thread whose CPU priority is ``nice`` steps below the process's (``sql.nice``).

    Why: an auditor query shares the machine with ingest (``POST /v1/sql`` inside ``learnright
    serve``). At a lower priority it takes the CPU ingest leaves idle and yields it as soon as
    ingest wants it, so auditors cost ingest little; in return a query may take longer on a busy
    machine, within ``sql.time_limit_s`` like any other. DuckDB runs a query on the calling thread
    (``sql.threads`` 1) and creates its worker threads, when it has any, from the thread that opens
    the database, so they inherit the priority. ``nice`` 0 runs ``run`` here. Its result or its
    error is returned or raised as is.
    """
    if nice == 0:
        return run()
    with _pools_lock:
        pool = _pools.get(nice)
        if pool is None:
            pool = _pools[nice] = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix=f"auditor-sql-nice{nice}",
                                                     initializer=_lower_priority, initargs=(nice,))
    return pool.submit(run).result()


class SqlRefusedError(TerminalError):
    """The query is not exactly one read-only SELECT, or DuckDB refused it while running."""

    code = "sql_refused"


class SqlTimeoutError(SqlRefusedError):
    """The query ran past the time limit and was interrupted."""

    code = "sql_timeout"


class SqlTooLargeError(SqlRefusedError):
    """The result grew past the byte limit and was refused.

    Attributes:
        bytes_read: how much of the result had been fetched when it was refused (at most
            one batch past the limit: the rest is never read).
    """

    code = "sql_too_large"

    def __init__(self, message: str, *, bytes_read: int) -> None:
        super().__init__(message)
        self.bytes_read = bytes_read


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlLimits:
    time_limit_s: float = 10.0
    row_limit: int = 100_000
    memory_limit: str = "1GB"
    threads: int = 2
    nice: int = 0
    """How much lower than its caller's the CPU priority of the thread that runs the query is
    (:func:`at_auditor_priority`); 0 runs it on the caller's thread."""
    max_result_bytes: int = 64 * 2**20
    max_query_bytes: int = 256 * 2**10
    temp_directory: Path = Path(tempfile.gettempdir()) / "learnright-sql-spill"
    """Where DuckDB spills a large sort or DISTINCT (bounded by ``max_temp_bytes``); never
    beside the queried file, which may be a published snapshot."""
    max_temp_bytes: str = "4GB"

    @classmethod
    def from_settings(cls, sql: SqlSettings) -> "SqlLimits":
        """The limits the settings ask for (``LEARNRIGHT_SQL__*``)."""
        return cls(time_limit_s=sql.time_limit_s, row_limit=sql.row_limit, memory_limit=sql.memory_limit,
                   threads=sql.threads, nice=sql.nice,
                   max_result_bytes=sql.max_result_bytes, max_query_bytes=sql.max_query_bytes,
                   temp_directory=sql.temp_directory, max_temp_bytes=sql.max_temp_bytes)


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlResult:
    table: pa.Table
    truncated: bool
    elapsed_s: float
    source: Path
    body: bytes | None = None
    """The rendered result, when :func:`run_query` was given a format."""


def check_select(sql: str, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """The one SELECT statement of ``sql``, as DuckDB's parser split it.

    ``con``, when given, serializes the parse tree (nothing else runs on it); otherwise a
    fresh in-memory connection does, which costs tens of milliseconds.

    Raises:
        SqlRefusedError: not parseable, not exactly one statement, or not a SELECT.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlRefusedError(f"the query does not parse: {exc}") from exc
    if len(statements) != 1:
        raise SqlRefusedError(f"exactly one statement is allowed (got {len(statements)})")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise SqlRefusedError(f"only a read-only SELECT is allowed (got a {kind.name} statement)")
    query = statements[0].query
    _check_query_nodes(query, con)
    return query


def _check_query_nodes(query: str, con: duckdb.DuckDBPyConnection | None = None) -> None:
    """Refuses ``query`` unless every query node of its parse tree only reads.

    ``extract_statements`` types ``WITH x AS (DELETE ... RETURNING 1) SELECT ...`` as a
    SELECT; the serialized tree shows the DELETE_QUERY_NODE inside it.
    """
    if con is not None:
        serialized = con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0]
    else:
        with duckdb.connect(":memory:", config={"enable_external_access": False,
                                                "autoload_known_extensions": False,
                                                "autoinstall_known_extensions": False}) as own:
            serialized = own.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0]
    try:
        tree = json.loads(serialized)
    except RecursionError as exc:
        raise SqlRefusedError("the query is nested too deeply to check; flatten its expressions"
                              " (for instance a CASE or IN list instead of deeply nested parentheses)") from exc
    if tree.get("error", True):
        raise SqlRefusedError("only a plain read-only SELECT is allowed (DuckDB cannot serialize this query's"
                              f" parse tree to check it: {tree.get('error_message', 'no reason given')})")
    found = sorted(_query_node_types(tree) - READ_ONLY_NODES)
    if found:
        raise SqlRefusedError(f"only a read-only SELECT is allowed (the query contains {', '.join(found)};"
                              " a data-changing CTE is refused too)")


def _query_node_types(tree: object) -> set[str]:
    types: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and (kind.endswith("_NODE") or ("cte_map" in node and "modifiers" in node)):
                types.add(kind)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return types


def spill_directory(source: str, limits: SqlLimits) -> Path:
    """One spill directory per queried source: DuckDB lets a query read its own spill
    directory even with external access off, so it must hold nothing of another source."""
    spill = Path(limits.temp_directory) / hashlib.sha256(source.encode()).hexdigest()[:16]
    spill.mkdir(mode=0o700, parents=True, exist_ok=True)
    return spill


def sandbox(path: Path, limits: SqlLimits) -> duckdb.DuckDBPyConnection:
    """A read-only connection to ``path`` with external access off and the configuration locked."""
    if not Path(path).exists():
        raise SqlRefusedError(f"no DuckDB file at {path} to query")
    try:
        spill = spill_directory(str(Path(path).resolve()), limits)
        # External access is turned off right after connecting (below): DuckDB refuses a
        # temp_directory in the same configuration that disables it.
        con = duckdb.connect(str(path), read_only=True, config={
            "temp_directory": str(spill.resolve()),
            "max_temp_directory_size": limits.max_temp_bytes,
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "allow_community_extensions": False,
            "memory_limit": limits.memory_limit,
            "threads": limits.threads,
        })
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            raise LedgerLockedError(f"{path} is held by its writer (the running service): {exc}") from exc
        raise SqlRefusedError(f"cannot open {path} read-only: {exc}") from exc
    # DuckDB shares one database instance between the connections a process opens to the
    # same file, so a second query on a snapshot finds the configuration already locked.
    with _configuring:
        locked = con.execute("SELECT current_setting('lock_configuration')").fetchall()[0][0]
        if not locked:
            con.execute("SET GLOBAL enable_external_access = false")
            con.execute("SET GLOBAL TimeZone = 'UTC'")
            con.execute("SET GLOBAL lock_configuration = true")
    settings = dict(con.execute("SELECT name, value FROM duckdb_settings() WHERE name IN"
                                " ('TimeZone', 'enable_external_access', 'lock_configuration')").fetchall())
    if settings != {"TimeZone": "UTC", "enable_external_access": "false", "lock_configuration": "true"}:
        con.close()
        raise SqlRefusedError(f"the sandbox for {path} is not configured as required (got {settings})")
    return con


def run_query(path: Path, sql: str, limits: SqlLimits, fmt: str | None = None,
              connect: Callable[[], duckdb.DuckDBPyConnection] | None = None) -> SqlResult:
    """Runs one checked SELECT on ``path`` (read-only, sandboxed) within ``limits``.

    ``connect``, when given, opens the sandbox instead (a lake at a close:
    :func:`ledger.storage.lake.lake_sandbox`); ``path`` then only names the source.

    With ``fmt``, the result is rendered too (``SqlResult.body``), batch by batch, and the
    time and byte limits are checked after each batch of the rendering as well: a limit
    never waits for a whole answer to be rendered.

    Raises:
        SqlRefusedError: the query was refused by the check or by DuckDB.
        SqlTimeoutError: it ran past ``limits.time_limit_s``.
        SqlTooLargeError: the result (or its rendering) passed ``limits.max_result_bytes``.
    """
    size = len(sql.encode("utf-8", "surrogatepass"))
    if size > limits.max_query_bytes:
        raise SqlRefusedError(f"the query text is {size} bytes, more than the limit of {limits.max_query_bytes}"
                              " bytes; send a shorter query")
    started = time.monotonic()
    return at_auditor_priority(limits.nice, lambda: _run_checked(path, sql, limits, fmt, connect, started))


def _run_checked(path: Path, sql: str, limits: SqlLimits, fmt: str | None,
                 connect: Callable[[], duckdb.DuckDBPyConnection] | None, started: float) -> SqlResult:
    query = check_select(sql)
    con = connect() if connect is not None else sandbox(path, limits)
    timer = threading.Timer(max(0.0, limits.time_limit_s - (time.monotonic() - started)), con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        table, truncated = _fetch(con, query, limits, started)
    finally:
        timer.cancel()
        con.close()
    result = SqlResult(table=table, truncated=truncated, elapsed_s=time.monotonic() - started, source=Path(path))
    if fmt is None:
        return result
    body = render(result, fmt, limits=limits, started=started)
    return replace(result, body=body, elapsed_s=time.monotonic() - started)


def _fetch(con: duckdb.DuckDBPyConnection, query: str, limits: SqlLimits, started: float) -> tuple[pa.Table, bool]:
    """The query's result, fetched in small batches so the byte limit refuses it early."""
    try:
        reader = con.sql(query).to_arrow_reader(min(limits.row_limit + 1, BATCH_ROWS))
        # The reader holds the query's result, and through it the database: it is closed
        # before anything leaves here, so an error's traceback never keeps the database
        # open (DuckDB would wait for it forever on the next connect to the same file).
        try:
            batches, rows, size, truncated = [], 0, 0, False
            for batch in reader:
                if rows + batch.num_rows > limits.row_limit:
                    batch, truncated = batch.slice(0, limits.row_limit - rows), True
                size += batch.nbytes
                if size > limits.max_result_bytes:
                    break
                batches.append(batch)
                rows += batch.num_rows
                if truncated:
                    break
            schema = reader.schema
        finally:
            reader.close()
        if size > limits.max_result_bytes:
            raise _too_large(limits, size)
        return pa.Table.from_batches(batches, schema=schema), truncated
    except duckdb.InterruptException as exc:
        raise _timed_out(limits) from exc
    except (pa.ArrowException, OSError) as exc:
        # The interrupt surfaces through Arrow's reader as an OSError ("INTERRUPT Error")
        # when it fires while batches stream.
        if time.monotonic() - started >= limits.time_limit_s or "INTERRUPT" in str(exc):
            raise _timed_out(limits) from exc
        raise SqlRefusedError(f"DuckDB refused the query while its result was read: {exc}") from exc
    except duckdb.Error as exc:
        if time.monotonic() - started >= limits.time_limit_s:
            raise _timed_out(limits) from exc
        raise SqlRefusedError(f"DuckDB refused the query: {exc}") from exc


def strip_paths(message: str) -> str:
    """``message`` with absolute filesystem paths replaced by ``<path>``: DuckDB names its files and home."""
    return _ABSOLUTE_PATH.sub("<path>", message)


def _timed_out(limits: SqlLimits) -> SqlTimeoutError:
    return SqlTimeoutError(f"the query ran past the time limit of {limits.time_limit_s:g}s and was stopped")


def _too_large(limits: SqlLimits, bytes_read: int) -> SqlTooLargeError:
    return SqlTooLargeError(f"the result is larger than the limit of {limits.max_result_bytes} bytes"
                            f" ({limits.max_result_bytes / 2**20:g} MiB) and was refused; select fewer rows or"
                            " columns, or aggregate", bytes_read=bytes_read)


def render(result: SqlResult, fmt: str, *, limits: SqlLimits | None = None, started: float | None = None) -> bytes:
    """The result as ``json`` (objects; decimals as strings), ``csv`` or ``arrow`` (IPC stream).

    The answer is built one batch at a time; with ``limits``, the byte limit (and, given
    ``started``, the time limit) is checked after each batch, so an answer that renders
    far larger or slower than its Arrow form is refused part-way. The bytes are the same
    however the result is batched.

    Raises:
        SqlRefusedError: an unknown format.
        SqlTooLargeError, SqlTimeoutError: a limit passed while rendering.
    """
    if fmt not in FORMATS:
        raise SqlRefusedError(f"format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    out = io.BytesIO()

    def check() -> None:
        if limits is None:
            return
        if out.tell() > limits.max_result_bytes:
            raise _too_large(limits, out.tell())
        if started is not None and time.monotonic() - started >= limits.time_limit_s:
            raise _timed_out(limits)

    batches = result.table.to_batches(max_chunksize=BATCH_ROWS)
    if fmt == "csv":
        with pa_csv.CSVWriter(out, result.table.schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                check()
    elif fmt == "arrow":
        with pa.ipc.new_stream(out, result.table.schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                check()
    else:
        columns = [{"name": f.name, "type": str(f.type)} for f in result.table.schema]
        out.write(json.dumps({"columns": columns})[:-1].encode() + b', "rows": [')
        separator = b""
        for batch in batches:
            for row in batch.to_pylist():
                out.write(separator + json.dumps([_json_value(v) for v in row.values()]).encode())
                separator = b", "
            check()
        out.write(f'], "truncated": {json.dumps(result.truncated)}}}\n'.encode())
    check()
    return out.getvalue()


def _json_value(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value
