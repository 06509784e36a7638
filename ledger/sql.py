"""Auditor SQL: exactly one read-only SELECT, in a sandbox, within time and row limits.

Two independent walls keep a query from changing anything or reading outside the ledger:
  1. DuckDB's own parser (:func:`duckdb.extract_statements`) must find exactly one
     statement, of type SELECT (``FROM t``, ``WITH ... SELECT``, ``DESCRIBE`` and
     ``SUMMARIZE`` parse as SELECT too). INSERT, COPY, ATTACH, INSTALL, LOAD, SET,
     PRAGMA, CALL and several statements are refused before anything runs.
  2. The query runs on its own connection to a DuckDB file opened read-only, with
     external access disabled (no files, no network: ``read_text('/etc/passwd')`` is
     refused), extension autoloading and autoinstall off, and the configuration locked
     so the query cannot loosen any of it.

The file is a published snapshot (:mod:`ledger.snapshots`) or, when no service holds it,
the ledger file itself; either way it is opened here, read-only, apart from the
:class:`~ledger.store.Ledger` that writes. A timer interrupts the connection at the
time limit; rows past the row limit are not read.
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv

from learnright.errors import TerminalError
from ledger.errors import LedgerLockedError

FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8",
           "arrow": "application/vnd.apache.arrow.stream"}


class SqlRefusedError(TerminalError):
    """The query is not exactly one read-only SELECT, or DuckDB refused it while running."""


class SqlTimeoutError(SqlRefusedError):
    """The query ran past the time limit and was interrupted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlLimits:
    time_limit_s: float = 10.0
    row_limit: int = 100_000
    memory_limit: str = "1GB"
    threads: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlResult:
    table: pa.Table
    truncated: bool
    elapsed_s: float
    source: Path


def check_select(sql: str) -> str:
    """The one SELECT statement of ``sql``, as DuckDB's parser split it.

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
    return statements[0].query


def sandbox(path: Path, limits: SqlLimits) -> duckdb.DuckDBPyConnection:
    """A read-only connection to ``path`` with external access off and the configuration locked."""
    if not Path(path).exists():
        raise SqlRefusedError(f"no DuckDB file at {path} to query")
    try:
        con = duckdb.connect(str(path), read_only=True, config={
            "enable_external_access": False,
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
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET lock_configuration = true")
    return con


def run_query(path: Path, sql: str, limits: SqlLimits) -> SqlResult:
    """Runs one checked SELECT on ``path`` (read-only, sandboxed) within ``limits``.

    Raises:
        SqlRefusedError: the query was refused by the check or by DuckDB.
        SqlTimeoutError: it ran past ``limits.time_limit_s``.
    """
    query = check_select(sql)
    started = time.monotonic()
    con = sandbox(path, limits)
    timer = threading.Timer(limits.time_limit_s, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        reader = con.sql(query).to_arrow_reader(min(limits.row_limit + 1, 10_000))
        batches, rows, truncated = [], 0, False
        for batch in reader:
            if rows + batch.num_rows > limits.row_limit:
                batches.append(batch.slice(0, limits.row_limit - rows))
                truncated = True
                break
            batches.append(batch)
            rows += batch.num_rows
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.InterruptException as exc:
        raise SqlTimeoutError(f"the query ran past the time limit of {limits.time_limit_s:g}s and was stopped") from exc
    except duckdb.Error as exc:
        if time.monotonic() - started >= limits.time_limit_s:
            raise SqlTimeoutError(f"the query ran past the time limit of {limits.time_limit_s:g}s and was stopped") from exc
        raise SqlRefusedError(f"DuckDB refused the query: {exc}") from exc
    finally:
        timer.cancel()
        con.close()
    return SqlResult(table=table, truncated=truncated, elapsed_s=time.monotonic() - started, source=Path(path))


def render(result: SqlResult, fmt: str) -> bytes:
    """The result as ``json`` (objects; decimals as strings), ``csv`` or ``arrow`` (IPC stream)."""
    if fmt == "csv":
        out = io.BytesIO()
        pa_csv.write_csv(result.table, out)
        return out.getvalue()
    if fmt == "arrow":
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, result.table.schema) as writer:
            writer.write_table(result.table)
        return sink.getvalue()
    if fmt == "json":
        document = {
            "columns": [{"name": f.name, "type": str(f.type)} for f in result.table.schema],
            "rows": [[_json_value(v) for v in row.values()] for row in result.table.to_pylist()],
            "truncated": result.truncated,
        }
        return (json.dumps(document) + "\n").encode()
    raise SqlRefusedError(f"format must be one of {', '.join(FORMATS)} (got {fmt!r})")


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
