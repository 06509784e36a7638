"""The lake edge on a real PostgreSQL catalog: numbering, the fence, the close's lock, the dialect.

The byte-for-byte comparisons with the single file (one and two writers over the same log)
are in tests/consumers/test_reproducible.py; these pin the coordination they rest on.
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ground.metrics import Metrics
from ground.settings import LedgerSettings, Settings
from learnright.api import create_app
from ledger.core.records import IngestBatch
from ledger.services.tokens import AUDITOR, HOLDER, create_token
from ledger.errors import StaleBatchError
from ledger.storage.lake import LOCK_KEY, lake_dialect
from ledger.storage.store import Ledger
from learnright.cli import app
from tests.learnright.books import NOW, book_two_holders


def test_the_lake_dialect_drops_keys_and_unique_constraints_and_puts_tokens_apart():
    ddl = """CREATE TABLE t (
        a INTEGER PRIMARY KEY,
        b VARCHAR NOT NULL UNIQUE,
        c DECIMAL(38, 12) NOT NULL,
        PRIMARY KEY (a, b)
    );
    CREATE TABLE api_tokens (token_id VARCHAR PRIMARY KEY, secret_sha256 VARCHAR NOT NULL UNIQUE);
    ALTER TABLE api_tokens ADD COLUMN scope VARCHAR;
    CREATE VIEW v AS SELECT a FROM t;
    """
    assert lake_dialect(ddl) == [
        "CREATE TABLE IF NOT EXISTS lake_access.main.api_tokens (token_id VARCHAR, secret_sha256 VARCHAR NOT NULL);\n"
        "ALTER TABLE lake_access.main.api_tokens ADD COLUMN IF NOT EXISTS scope VARCHAR;",
        "CREATE TABLE t (\n        a INTEGER,\n        b VARCHAR NOT NULL,\n        c DECIMAL(38, 12) NOT NULL\n    );\n"
        "CREATE VIEW v AS SELECT a FROM t;",
    ]


def offsets_batch(start: int, end: int) -> IngestBatch:
    return IngestBatch(offsets={("t", 0): end}, starts={("t", 0): start})


@pytest.mark.postgres
def test_writers_number_batches_apart_and_a_batch_behind_the_lake_is_refused_whole(lake_location):
    with Ledger.open(lake_location) as first, Ledger.open(lake_location) as second:
        a = first.append_batch(offsets_batch(0, 5))
        b = second.append_batch(offsets_batch(5, 9))
        assert (a.batch_id, b.batch_id) == (1, 2)
        with pytest.raises(StaleBatchError, match=r"t/0: this batch starts at offset 3 but the lake has booked up to 9"):
            first.append_batch(offsets_batch(3, 12))  # a zombie: it read 3.. before the partition moved on
        assert first.stored_offsets() == {("t", 0): 9}
        assert first.scalar("SELECT count(*) FROM ingest_batches") == 2


@pytest.mark.postgres
def test_an_append_waits_for_a_close_and_is_numbered_after_it(lake_location, postgres_dsn):
    """Deterministic: the append is seen waiting on the lock in pg_locks before the close ends."""
    with Ledger.open(lake_location) as closer, Ledger.open(lake_location) as writer:
        closer.append_batch(offsets_batch(0, 1))
        done: list[object] = []
        with closer.closing():
            watermark_batch = closer.scalar("SELECT max(batch_id) FROM ingest_batches")
            thread = threading.Thread(target=lambda: done.append(writer.append_batch(offsets_batch(1, 2))))
            thread.start()
            catalog = lake_location.catalog_dsn
            with psycopg.connect(catalog, autocommit=True) as pg:
                while not pg.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                     " AND objid = %s", [LOCK_KEY & 0xFFFFFFFF]).fetchone()[0]:
                    thread.join(0.05)
                    assert thread.is_alive(), "the append finished while the close held the lock"
            assert done == []
        thread.join()
        assert done[0].batch_id > watermark_batch


@pytest.mark.postgres
def test_auditors_query_the_lake_as_a_close_left_it_and_never_reach_the_tokens(lake_location, license_book_text):
    book_two_holders(lake_location, license_book_text)  # closes February, March and April in turn
    with Ledger.open(lake_location) as ledger:
        ledger.record_token(token_id="tok-1", secret_sha256="f" * 64, role="auditor", holder_id=None, label="audit",
                            created_at=NOW, expires_at=None)
        assert [row.token_id for row in ledger.token_rows()] == ["tok-1"]  # the ledger's own processes see it
    env = {"LEARNRIGHT_LEDGER__URL": lake_location.url, "LEARNRIGHT_LEDGER__DATA_PATH": str(lake_location.data_path)}

    def sql(query: str):
        return CliRunner().invoke(app, ["sql", query, "--at-close", "2026-03"], env=env)

    answered = sql("SELECT period, count(*) AS entries FROM accruals GROUP BY ALL ORDER BY ALL")
    assert answered.exit_code == 0, answered.output
    assert answered.stdout.splitlines() == ['"period","entries"', '"2026-02",2', '"2026-03",2']  # April was booked after
    assert "at the close of 2026-03" in answered.stderr
    closes = sql("SELECT string_agg(period, ' ' ORDER BY period) FROM period_closes")
    assert closes.stdout.splitlines()[1] == '"2026-02 2026-03"'
    for query in ("SELECT * FROM api_tokens", "SELECT * FROM lake_access.api_tokens",
                  "SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT * FROM learnright_access.counters')",
                  "SELECT * FROM read_parquet('" + str(lake_location.data_path) + "-access/**/*.parquet')"):
        refused = sql(query)
        assert refused.exit_code != 0, (query, refused.output)
        assert "tok-1" not in refused.output and "f" * 64 not in refused.output
    missing = sql("SELECT 1")
    assert missing.exit_code == 0
    unknown = CliRunner().invoke(app, ["sql", "SELECT 1", "--at-close", "2026-09"], env=env)
    assert unknown.exit_code != 0 and "2026-09" in unknown.output and "2026-02, 2026-03, 2026-04" in unknown.output


@pytest.mark.postgres
def test_the_api_answers_auditors_at_a_lake_close_and_the_same_server_serves_holders_from_the_lake(
        lake_location, license_book_text, tmp_path):
    book_two_holders(lake_location, license_book_text)
    settings = Settings().model_copy(update={
        "ledger": LedgerSettings(url=lake_location.url, data_path=lake_location.data_path),
        "snapshots_dir": tmp_path / "snapshots", "signing_key": tmp_path / "no-key.pem"})
    with Ledger.open(lake_location) as ledger:
        auditor = create_token(ledger, role=AUDITOR, holder_id=None, now=NOW).token
        holder = create_token(ledger, role=HOLDER, holder_id="h-ann", now=NOW).token
        with TestClient(create_app(ledger=ledger, settings=settings, metrics=Metrics())) as client:
            def ask(token: str, **body: object):
                return client.post("/v1/sql", headers={"Authorization": f"Bearer {token}"}, json=body)

            answered = ask(auditor, sql="SELECT count(*) AS closes FROM period_closes", at_close="2026-02")
            assert answered.status_code == 200, answered.text
            assert answered.json()["rows"] == [[1]] and answered.json()["at_close"] == "2026-02"
            assert answered.headers["X-Learnright-At-Close"] == "2026-02"
            missing = ask(auditor, sql="SELECT 1", at_close="2026-09")
            assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
            assert ask(holder, sql="SELECT 1", at_close="2026-02").status_code == 403
            refused = ask(auditor, sql="SELECT * FROM api_tokens", at_close="2026-02")
            assert (refused.status_code, refused.json()["error"]) == (400, "refused")
            listed = client.get("/v1/statements", headers={"Authorization": f"Bearer {holder}"}).json()["statements"]
            assert {s["holder_id"] for s in listed} == {"h-ann"} and len(listed) == 3


@pytest.mark.postgres
def test_a_lake_at_schema_12_gets_the_parsed_forms_of_its_license_documents(lake_location, license_book_text,
                                                                             monkeypatch):
    from ledger.storage import licenses
    from ledger.storage.lake import connect_lake

    with Ledger.open(lake_location) as ledger:
        applied, _ = ledger.apply_licenses(license_book_text, "book.toml")
        forms = ledger.query("SELECT * FROM license_document_forms")
    con = connect_lake(lake_location, read_only=False)  # back to schema 12: no forms, no version 13
    con.execute("DROP TABLE license_document_forms")
    con.execute("DELETE FROM schema_migrations WHERE version = 13")
    con.close()
    licenses._PARSED.clear()
    monkeypatch.setattr(licenses, "read_document", lambda *_: pytest.fail("the book was parsed from its TOML"))
    with Ledger.open(lake_location) as ledger:  # migration 13 writes the forms in the lake
        assert ledger.query("SELECT * FROM license_document_forms") == forms and len(forms) == 1
        assert ledger.load_book() == applied


@pytest.mark.postgres
def test_a_lake_at_schema_13_keeps_its_stored_digests_and_books_on_without_them(lake_location, license_book_text):
    """Migration 14 in a lake: the same ALTER as a file; rows stored before keep their digest, new ones store none."""
    from datetime import datetime, timezone

    from ledger.core import chain
    from ledger.services.close import close_period
    from ledger.services.verify import verify
    from ledger.storage.lake import connect_lake
    from tests.ledger.keys import SIGNER
    from tests.ledger.storage.test_store import batch_of

    with Ledger.open(lake_location) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        ledger.append_batch(batch_of(ledger.load_book(), [1_000_000, 7]))
    con = connect_lake(lake_location, read_only=False)  # back to schema 13: every digest stored, NOT NULL
    for entry_id, *values in con.execute(f"SELECT entry_id, {', '.join(chain.ENTRY_FIELDS)} FROM accruals").fetchall():
        con.execute("UPDATE accruals SET entry_hash = ? WHERE entry_id = ?", [chain.digest(values), entry_id])
    con.execute("ALTER TABLE accruals ALTER COLUMN entry_hash SET NOT NULL")
    con.execute("DELETE FROM schema_migrations WHERE version = 14")
    con.close()
    with Ledger.open(lake_location) as ledger:  # migrates the lake to 14, 15 and 16 (a file's only: nothing here)
        assert ledger.scalar("SELECT max(version) FROM schema_migrations") == 16
        ledger.append_batch(batch_of(ledger.load_book(), [3], first=2, offset=2))
        assert ledger.query("SELECT event_id, entry_hash IS NULL FROM accruals ORDER BY event_id") == [
            ("e0", False), ("e1", False), ("e2", True)]
        # Auditors see every entry's digest: stored (e0, e1) or computed by the view's macro in the lake (e2).
        fields = ledger.query(f"SELECT event_id, {', '.join(chain.ENTRY_FIELDS)} FROM accruals ORDER BY event_id")
        assert ledger.query("SELECT event_id, entry_hash FROM audit_ledger ORDER BY event_id") == [
            (event_id, chain.digest(values)) for event_id, *values in fields]
        close_period(ledger, "2026-04", now=datetime(2026, 5, 2, tzinfo=timezone.utc), signer=SIGNER)
        report = verify(ledger)
        assert report.ok and (report.entries, report.closes) == (3, 1), report.problems
