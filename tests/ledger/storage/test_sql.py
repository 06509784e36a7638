"""Auditor SQL: one read-only SELECT; every attack is refused and the ledger file is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from learnright.cli import app
from ledger.storage.sql import (SqlLimits, SqlRefusedError, SqlTimeoutError, SqlTooLargeError, check_select, render,
                        run_query, sandbox, strip_paths)
from ledger.storage.store import Ledger
from ledger.services.verify import verify
from tests.learnright.books import book_two_holders

ATTACKS = {
    "insert": "INSERT INTO statements SELECT * FROM statements",
    "update": "UPDATE accruals SET amount = 0",
    "delete": "DELETE FROM accruals",
    "copy out": "COPY accruals TO '/tmp/stolen.csv'",
    "copy in": "COPY accruals FROM '/etc/passwd'",
    "attach": "ATTACH '/tmp/other.duckdb' AS other",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "read a file": "SELECT * FROM read_text('/etc/passwd')",
    "read a csv": "SELECT * FROM read_csv('/etc/passwd')",
    "list files": "SELECT * FROM glob('/etc/*')",
    "set a setting": "SET enable_external_access = true",
    "pragma": "PRAGMA enable_profiling",
    "two statements": "SELECT 1; DROP TABLE accruals",
    "select then write": "SELECT 1; INSERT INTO accruals SELECT * FROM accruals",
    "create": "CREATE TABLE x AS SELECT 1",
    "drop": "DROP TABLE accruals",
    "checkpoint": "CHECKPOINT",
    "not sql": "SELEKT everything",
    "empty": "",
    "delete in a cte": "WITH x AS (DELETE FROM accruals RETURNING 1) SELECT * FROM x",
    "insert in a cte": "WITH x AS (INSERT INTO accruals SELECT * FROM accruals RETURNING 1) SELECT * FROM x",
    "update in a materialized cte": "WITH x AS MATERIALIZED (UPDATE statements SET payable = 0 RETURNING 1) SELECT 1",
}
DATA_CHANGING_CTES = ("delete in a cte", "insert in a cte", "update in a materialized cte")


@pytest.fixture
def ledger_file(tmp_path, license_book_text) -> Path:
    return book_two_holders(tmp_path / "ledger.duckdb", license_book_text)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_select_reads_the_ledger_and_its_audit_views(ledger_file):
    result = run_query(ledger_file, "SELECT holder_id, currency, sum(amount) AS amount FROM audit_accruals"
                                    " GROUP BY ALL ORDER BY ALL", SqlLimits())
    # Feb at v1 (0.80/M), Mar 20 and Apr at v2 (1.20/M): 0.80 + 2.40 + 3.60; photos 5 JPY per item x 60.
    assert [(r["holder_id"], r["currency"], r["amount"]) for r in result.table.to_pylist()] == [
        ("h-ann", "USD", Decimal("6.8")), ("h-bo", "JPY", Decimal("300"))]


def test_the_reconciliation_view_shows_every_statement_equals_the_ledger(ledger_file):
    result = run_query(ledger_file, "SELECT statement_id, balanced, statement_accrued, ledger_amount"
                                    " FROM audit_reconciliation ORDER BY period, holder_id", SqlLimits())
    rows = result.table.to_pylist()
    assert len(rows) == 6  # two holders x three months
    assert all(r["balanced"] and r["statement_accrued"] == r["ledger_amount"] for r in rows)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_are_refused_and_the_ledger_is_unchanged(ledger_file, name):
    before = digest(ledger_file)
    with pytest.raises(SqlRefusedError):
        run_query(ledger_file, ATTACKS[name], SqlLimits())
    assert digest(ledger_file) == before
    assert not Path("/tmp/stolen.csv").exists()
    with Ledger.open(ledger_file, read_only=True) as ledger:
        assert verify(ledger).ok


def test_a_runaway_cross_join_is_stopped_by_the_time_limit(ledger_file):
    before = digest(ledger_file)
    with pytest.raises(SqlTimeoutError, match="time limit of 1s"):
        run_query(ledger_file, "SELECT count(*) FROM range(100000000) a, range(100000000) b, accruals",
                  SqlLimits(time_limit_s=1))
    assert digest(ledger_file) == before


def test_rows_past_the_limit_are_not_returned_and_the_result_says_so(ledger_file):
    result = run_query(ledger_file, "SELECT * FROM range(1000000)", SqlLimits(row_limit=25))
    assert (result.table.num_rows, result.truncated) == (25, True)


def test_results_as_csv_json_and_arrow(ledger_file):
    result = run_query(ledger_file, "SELECT holder_id, payable FROM statements WHERE period = '2026-04'"
                                    " ORDER BY holder_id", SqlLimits())
    assert render(result, "csv").decode().splitlines()[0] == '"holder_id","payable"'
    document = json.loads(render(result, "json"))
    assert document["rows"] == [["h-ann", "3.600000000000"], ["h-bo", "150.000000000000"]]
    table = pa.ipc.open_stream(render(result, "arrow")).read_all()
    assert table.column("holder_id").to_pylist() == ["h-ann", "h-bo"]


def test_the_sql_command_prints_csv_and_refuses_a_write(ledger_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNRIGHT_SNAPSHOTS_DIR", str(tmp_path / "snapshots"))  # it answers from a snapshot
    monkeypatch.setenv("LEARNRIGHT_SQL__TEMP_DIRECTORY", str(tmp_path / "spill"))
    runner = CliRunner()
    ok = runner.invoke(app, ["sql", "--db", str(ledger_file), "SELECT count(*) AS n FROM statements"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines() == ['"n"', "6"]
    refused = runner.invoke(app, ["sql", "--db", str(ledger_file), "DELETE FROM statements"])
    assert refused.exit_code == 2
    assert "only a read-only SELECT is allowed (got a DELETE statement)" in refused.output


@pytest.mark.parametrize("name", DATA_CHANGING_CTES)
def test_the_gate_itself_refuses_a_data_changing_cte(name):
    """The parse-tree check refuses these before any connection opens, not only the read-only file.

    DuckDB 1.5 (pinned) refuses a data-changing CTE in its parser already; a DuckDB that
    parses it (2.0) meets the parse-tree check, which names the node.
    """
    with pytest.raises(SqlRefusedError, match=r"only a read-only SELECT is allowed \(the query contains"
                                              r" (DELETE|INSERT|UPDATE)_QUERY_NODE|the query does not parse: Parser"
                                              r" Error: A CTE needs a SELECT"):
        check_select(ATTACKS[name])


@pytest.mark.parametrize("sql", [
    "FROM accruals", "SELECT 1 UNION ALL SELECT 2", "DESCRIBE accruals", "SUMMARIZE accruals",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT count(*) FROM r",
    "WITH a AS MATERIALIZED (SELECT 1 AS x) SELECT * FROM a WHERE x IN (SELECT 1)",
])
def test_the_gate_lets_reading_queries_through(ledger_file, sql):
    assert check_select(sql)
    run_query(ledger_file, sql, SqlLimits())


def test_a_result_past_the_byte_limit_is_refused_while_it_is_fetched(ledger_file):
    with pytest.raises(SqlTooLargeError, match=r"larger than the limit of 67108864 bytes \(64 MiB\)") as refused:
        run_query(ledger_file, "SELECT repeat('x', 10000000) FROM range(200)", SqlLimits(time_limit_s=600))
    # Refused at the first oversized batch (64 rows of 10 MB), not after all 2 GB were gathered.
    assert refused.value.bytes_read <= 64 * 10_000_100
    with pytest.raises(SqlTooLargeError, match="larger than the limit of 100000 bytes"):
        run_query(ledger_file, "SELECT repeat('x', 1000) FROM range(1000)", SqlLimits(max_result_bytes=100_000))
    small = run_query(ledger_file, "SELECT repeat('x', 1000) FROM range(50)", SqlLimits(max_result_bytes=100_000))
    assert small.table.num_rows == 50


def test_the_rendered_answer_counts_against_the_byte_limit_and_the_time_limit(ledger_file):
    # Eight boolean columns of 10,000 rows are ~10 kB in Arrow (bits) and ~480 kB as JSON.
    query = "SELECT " + ", ".join(f"i % {k} = 0 AS b{k}" for k in range(2, 10)) + " FROM range(10000) t(i)"
    limits = SqlLimits(max_result_bytes=100_000)
    assert run_query(ledger_file, query, limits).table.num_rows == 10000
    with pytest.raises(SqlTooLargeError, match="larger than the limit of 100000 bytes"):
        run_query(ledger_file, query, limits, fmt="json")
    rendered = run_query(ledger_file, "SELECT 1 AS n", SqlLimits(), fmt="csv")
    assert rendered.body == b'"n"\n1\n'


def test_a_time_out_while_batches_stream_is_the_time_limit_error(ledger_file):
    """The interrupt reaches Arrow's reader as an OSError; it is still the documented time-out."""
    with pytest.raises(SqlTimeoutError, match="time limit of 1s"):
        run_query(ledger_file, "SELECT md5(repeat(i::VARCHAR, 2000)) AS h FROM range(100000000) r(i)",
                  SqlLimits(time_limit_s=1))


def test_strip_paths_hides_absolute_paths_but_keeps_division_and_urls():
    assert strip_paths('Cannot access directory "/root/.duckdb/extensions/v2.0.0" - see https://duckdb.org/docs/x'
                       " in SELECT a / b, c/d") == ('Cannot access directory "<path>" - see https://duckdb.org/docs/x'
                                                    " in SELECT a / b, c/d")


def test_two_queries_on_one_file_at_once_both_run_in_a_locked_sandbox(ledger_file):
    """DuckDB shares one instance per file within a process: the second finds the configuration locked."""
    first = sandbox(ledger_file, SqlLimits())
    try:
        assert run_query(ledger_file, "SELECT count(*) AS n FROM statements", SqlLimits()).table.to_pylist() == [
            {"n": 6}]
        with pytest.raises(duckdb.Error, match="locked"):
            first.execute("SET enable_external_access = true")
    finally:
        first.close()


def test_a_query_text_past_its_limit_is_refused_before_it_is_parsed(ledger_file):
    with pytest.raises(SqlRefusedError, match=r"the query text is 300\d\d bytes, more than the limit of 30000 bytes"):
        run_query(ledger_file, "SELECT 1" + " " * 30_000, SqlLimits(max_query_bytes=30_000))


def test_a_deeply_nested_expression_is_refused_with_a_clear_error(ledger_file):
    # Refused by the parse-tree check ("nested too deeply to check") or, first, by DuckDB's
    # parser (1.5 stops at an expression depth of 1000): either way by name, never a crash.
    with pytest.raises(SqlRefusedError, match="nested too deeply to check|Max expression depth limit of 1000 exceeded"):
        run_query(ledger_file, "SELECT " + "1+" * 3000 + "1", SqlLimits())


def test_a_large_distinct_spills_outside_the_queried_directory_and_within_its_bound(ledger_file, tmp_path_factory):
    spill = tmp_path_factory.mktemp("elsewhere") / "spill"
    before = sorted(p.name for p in ledger_file.parent.iterdir())
    limits = SqlLimits(memory_limit="64MB", temp_directory=spill, max_temp_bytes="16MB",
                       time_limit_s=600)  # about spilling, not time: a loaded machine must not turn it into a timeout
    # Past the spill bound DuckDB refuses the query: naming the bound (2.0) or, having no room
    # left to spill to, out of memory (1.5, pinned).
    with pytest.raises(SqlRefusedError, match="max_temp_directory_size|Out of Memory Error"):
        run_query(ledger_file, "SELECT count(DISTINCT i::VARCHAR || repeat('y', 60)) FROM range(20000000) r(i)", limits)
    assert sorted(p.name for p in ledger_file.parent.iterdir()) == before  # no .tmp beside the file
    assert [d.is_dir() for d in spill.iterdir()] == [True]  # a directory of this file's own


def test_rendering_batch_by_batch_gives_the_bytes_of_rendering_at_once(ledger_file):
    result = run_query(ledger_file, "SELECT i, i * 1.5 AS d, 'x' || i AS s FROM range(1000) r(i)", SqlLimits())
    assert len(result.table.to_batches()) > 1
    document = {"columns": [{"name": f.name, "type": str(f.type)} for f in result.table.schema],
                "rows": [[v if not isinstance(v, Decimal) else str(v) for v in row.values()]
                         for row in result.table.to_pylist()], "truncated": False}
    assert render(result, "json") == (json.dumps(document) + "\n").encode()
    assert pa.ipc.open_stream(render(result, "arrow")).read_all().equals(result.table)


def test_rendering_stops_at_the_first_batch_past_a_limit(ledger_file):
    result = run_query(ledger_file, "SELECT i, repeat('x', 100) AS s FROM range(5000) r(i)", SqlLimits())
    whole = len(render(result, "json"))
    with pytest.raises(SqlTooLargeError) as refused:
        render(result, "json", limits=SqlLimits(max_result_bytes=20_000))
    assert 20_000 < refused.value.bytes_read < whole / 10
    with pytest.raises(SqlTimeoutError, match="time limit of 1s"):  # a deadline already passed
        render(result, "csv", limits=SqlLimits(time_limit_s=1), started=time.monotonic() - 2)


# -- auditor queries below the service's CPU priority ------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value per thread is Linux's")
def test_a_query_runs_on_a_thread_below_the_callers_priority_and_the_caller_keeps_its_own(tmp_path):
    """``sql.nice``: DuckDB opens the database and runs the query on a thread ``nice`` steps below the caller,
    so it takes the CPU that ingest leaves idle; the caller's thread (the service's) is not lowered."""
    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    caller = priority()
    seen: list[int] = []

    def connect() -> duckdb.DuckDBPyConnection:
        seen.append(priority())
        return duckdb.connect()

    result = run_query(Path("memory"), "SELECT 41 + 1 AS answer", SqlLimits(nice=5), connect=connect)
    assert result.table.to_pylist() == [{"answer": 42}]
    assert seen == [min(19, caller + 5)] and priority() == caller
    run_query(Path("memory"), "SELECT 1", SqlLimits(nice=0), connect=connect)
    assert seen[-1] == caller  # 0: on the caller's own thread


def test_a_refusal_on_the_lowered_thread_reaches_the_caller_as_it_is(ledger_file):
    with pytest.raises(SqlRefusedError, match="no_such_table"):
        run_query(ledger_file, "SELECT * FROM no_such_table", SqlLimits(nice=3))
    with pytest.raises(SqlRefusedError, match="exactly one"):
        run_query(ledger_file, "SELECT 1; SELECT 2", SqlLimits(nice=3))
