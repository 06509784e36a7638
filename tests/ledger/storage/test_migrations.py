"""Upgrades of a ledger file: migrations 11 and 12 rewrite accruals and usage_events without their keys, and nothing else changes; migration 13 adds the parsed forms of license documents; from migration 14 entries store no digest;
migration 15 shows auditors every entry's digest, computed in SQL; migration 16 compresses signed documents
where the file's storage format allows it."""

import duckdb
import pytest

from ledger.core import chain
from ledger.errors import DuplicateEventError, LedgerFileError
from ledger.services.verify import verify
from ledger.storage.connection import STORAGE_VERSION
from ledger.storage.migrations import LATEST, MIGRATIONS
from ledger.storage.store import Ledger
from tests.ledger.ledgers import three_batches_and_a_closed_april
from tests.ledger.storage.test_store import batch_of

ACCRUALS_V10 = MIGRATIONS[11].split("CREATE TABLE accruals_v11 (")[1].split(");")[0]
EVENTS_V11 = MIGRATIONS[12].split("CREATE TABLE usage_events_v12 (")[1].split(");")[0]


def as_of_version_10(path):
    """Puts ``path`` back in the shape schema 10 left it: accruals keyed by entry_id, no version 11."""
    as_of_version_13(path)
    con = duckdb.connect(str(path))
    con.execute("BEGIN")
    con.execute(f"CREATE TABLE accruals_v10 ({ACCRUALS_V10.replace('entry_id BIGINT NOT NULL', 'entry_id BIGINT PRIMARY KEY', 1)})")
    con.execute("INSERT INTO accruals_v10 BY NAME SELECT * FROM accruals")
    con.execute("DROP TABLE accruals")
    con.execute("ALTER TABLE accruals_v10 RENAME TO accruals")
    con.execute("DELETE FROM schema_migrations WHERE version = 11")
    con.execute("COMMIT")
    con.close()


def accrual_rows_and_keys(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("SELECT * FROM accruals ORDER BY entry_id").fetchall()
        columns = con.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                              " WHERE table_name = 'accruals' ORDER BY ordinal_position").fetchall()
        keys = con.execute("SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'accruals'"
                           " AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')").fetchall()
        audit = con.execute("SELECT * FROM audit_ledger ORDER BY entry_id").fetchall()
    finally:
        con.close()
    return rows, columns, keys, audit


def stepped_back(tmp_path, license_book_text, as_of) -> tuple:
    """A ledger with three batches and a closed April, put back to an older schema by ``as_of``,
    and its verify report from before (what opening it must still give)."""
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as ledger:
        three_batches_and_a_closed_april(ledger, license_book_text)
        report = verify(ledger)
    as_of(path)
    return path, report


@pytest.fixture
def old_ledger(tmp_path, license_book_text):
    """A ledger of schema 10 with three batches and a closed April, and its verify report."""
    return stepped_back(tmp_path, license_book_text, as_of_version_10)


def test_opening_a_schema_10_ledger_rewrites_accruals_without_its_key_and_keeps_every_row(old_ledger):
    path, report = old_ledger
    rows, columns, keys, audit = accrual_rows_and_keys(path)
    assert keys == [("PRIMARY KEY",)] and len(rows) == 6
    with Ledger.open(path) as ledger:
        assert verify(ledger) == report and report.ok
        assert ledger.scalar("SELECT max(version) FROM schema_migrations") == LATEST
        ledger.append_batch(batch_of(ledger.load_book(), [5], first=6, offset=6))  # still books after the rewrite
    after_rows, after_columns, after_keys, after_audit = accrual_rows_and_keys(path)
    assert after_rows[:6] == rows and len(after_rows) == 7
    nullable_hash = [("entry_hash", "VARCHAR", "YES") if c[0] == "entry_hash" else c for c in columns]  # migration 14
    assert after_columns == nullable_hash and after_keys == []
    assert after_audit[:6] == audit


def test_a_copy_that_differs_refuses_the_migration_and_leaves_the_ledger_as_it_was(old_ledger, monkeypatch):
    path, _ = old_ledger
    rows, columns, keys, _ = accrual_rows_and_keys(path)
    broken = MIGRATIONS[11].replace("INSERT INTO accruals_v11 BY NAME SELECT * FROM accruals;",
                                    "INSERT INTO accruals_v11 BY NAME SELECT * FROM accruals WHERE entry_id > 1;")
    monkeypatch.setitem(MIGRATIONS, 11, broken)
    with pytest.raises(LedgerFileError, match=r"migration 11 of ledger .* failed and was rolled back: .*"
                       r"migration 11: the copy of accruals differs from the original \(6 rows, copy 5\)"):
        Ledger.open(path).close()
    assert accrual_rows_and_keys(path)[:3] == (rows, columns, keys)


def as_of_version_11(path):
    """Puts ``path`` back in the shape schema 11 left it: usage_events keyed by (platform_id, event_id), no version 12."""
    as_of_version_13(path)
    con = duckdb.connect(str(path))
    con.execute("BEGIN")
    con.execute(f"CREATE TABLE usage_events_v11 ({EVENTS_V11}, PRIMARY KEY (platform_id, event_id))")
    con.execute("INSERT INTO usage_events_v11 BY NAME SELECT * FROM usage_events")
    con.execute("DROP TABLE usage_events")
    con.execute("ALTER TABLE usage_events_v11 RENAME TO usage_events")
    con.execute("DELETE FROM schema_migrations WHERE version = 12")
    con.execute("COMMIT")
    con.close()


def event_rows_and_keys(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("SELECT * FROM usage_events ORDER BY batch_id, kafka_offset").fetchall()
        columns = con.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                              " WHERE table_name = 'usage_events' ORDER BY ordinal_position").fetchall()
        keys = con.execute("SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'usage_events'"
                           " AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')").fetchall()
    finally:
        con.close()
    return rows, columns, keys


@pytest.fixture
def ledger_11(tmp_path, license_book_text):
    """A ledger of schema 11 with three batches and a closed April, and its verify report."""
    return stepped_back(tmp_path, license_book_text, as_of_version_11)


def test_opening_a_schema_11_ledger_rewrites_usage_events_without_its_key_and_still_refuses_a_booked_event(ledger_11):
    path, report = ledger_11
    rows, columns, keys = event_rows_and_keys(path)
    assert keys == [("PRIMARY KEY",)] and len(rows) == 6
    with Ledger.open(path) as ledger:
        assert verify(ledger) == report and report.ok
        assert ledger.scalar("SELECT max(version) FROM schema_migrations") == LATEST
        book = ledger.load_book()
        with pytest.raises(DuplicateEventError, match=r"booked already.*\('p', 'e3'\)"):
            ledger.append_batch(batch_of(book, [5], first=3, offset=6))  # e3 is booked: the writer's filter refuses it
        ledger.append_batch(batch_of(book, [5], first=6, offset=6))
    after_rows, after_columns, after_keys = event_rows_and_keys(path)
    assert after_rows[:6] == rows and len(after_rows) == 7
    assert after_columns == columns and after_keys == []


def test_a_copy_of_usage_events_that_differs_refuses_migration_12(ledger_11, monkeypatch):
    path, _ = ledger_11
    before = event_rows_and_keys(path)
    broken = MIGRATIONS[12].replace("INSERT INTO usage_events_v12 BY NAME SELECT * FROM usage_events;",
                                    "INSERT INTO usage_events_v12 BY NAME SELECT * FROM usage_events"
                                    " WHERE event_id <> 'e0';")
    monkeypatch.setitem(MIGRATIONS, 12, broken)
    with pytest.raises(LedgerFileError, match=r"migration 12 of ledger .* failed and was rolled back: .*"
                       r"migration 12: the copy of usage_events differs from the original \(6 rows, copy 5\)"):
        Ledger.open(path).close()
    assert event_rows_and_keys(path) == before


def as_of_version_12(path):
    """Puts ``path`` back in the shape schema 12 left it: no parsed forms of license documents, no version 13."""
    as_of_version_13(path)
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE license_document_forms")
    con.execute("DELETE FROM schema_migrations WHERE version = 13")
    con.close()


@pytest.fixture
def ledger_12(tmp_path, license_book_text):
    """A ledger of schema 12 with three batches and a closed April, its verify report and its forms at schema 13."""
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as ledger:
        three_batches_and_a_closed_april(ledger, license_book_text)
        report = verify(ledger)
        forms = ledger.query("SELECT * FROM license_document_forms ORDER BY ALL")
    as_of_version_12(path)
    return path, report, forms


def test_opening_a_schema_12_ledger_writes_the_forms_of_its_license_documents(ledger_12, monkeypatch):
    from ledger.storage import licenses

    path, report, forms = ledger_12
    with Ledger.open(path) as ledger:
        assert ledger.query("SELECT * FROM license_document_forms ORDER BY ALL") == forms and len(forms) == 1
        assert verify(ledger) == report and report.ok
        assert ledger.scalar("SELECT max(version) FROM schema_migrations") == LATEST
        parsed = ledger.load_book()
        licenses._PARSED.clear()
        monkeypatch.setattr(licenses, "read_document", lambda *_: pytest.fail("the book was parsed from its TOML"))
        assert ledger.load_book() == parsed


def test_a_failed_backfill_rolls_migration_13_back(ledger_12, monkeypatch):
    from ledger.storage import migrations

    path, _, _ = ledger_12

    def broken(con):
        con.execute("INSERT INTO license_document_forms VALUES ('x', 1, '{}')")
        raise duckdb.ConversionException("the back-fill broke")

    monkeypatch.setitem(migrations.BACKFILLS, 13, broken)
    with pytest.raises(LedgerFileError, match=r"migration 13 of ledger .* failed and was rolled back: .*the back-fill"):
        Ledger.open(path).close()
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT max(version) FROM schema_migrations").fetchall() == [(12,)]
        assert con.execute("SELECT count(*) FROM information_schema.tables"
                           " WHERE table_name = 'license_document_forms'").fetchall() == [(0,)]
    finally:
        con.close()


def as_of_version_13(path):
    """Puts ``path`` back in the shape schema 13 left it: every entry's digest stored beside it, NOT NULL."""
    as_of_version_14(path)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"SELECT entry_id, {', '.join(chain.ENTRY_FIELDS)} FROM accruals WHERE entry_hash IS NULL"
                       " ORDER BY entry_id").fetchall()
    con.execute("BEGIN")
    for entry_id, *values in rows:
        con.execute("UPDATE accruals SET entry_hash = ? WHERE entry_id = ?", [chain.digest(values), entry_id])
    con.execute("COMMIT")
    con.execute("ALTER TABLE accruals ALTER COLUMN entry_hash SET NOT NULL")
    con.execute("DELETE FROM schema_migrations WHERE version = 14")
    con.close()


@pytest.fixture
def ledger_13(tmp_path, license_book_text):
    """A ledger of schema 13 (three batches and a closed April, every entry with its digest stored) and its report."""
    return stepped_back(tmp_path, license_book_text, as_of_version_13)


def test_opening_a_schema_13_ledger_keeps_its_stored_digests_and_books_on_without_them(ledger_13):
    from datetime import datetime, timezone

    from ledger.services.close import close_period
    from tests.ledger.keys import SIGNER

    path, report = ledger_13
    rows, columns, _, audit = accrual_rows_and_keys(path)
    assert ("entry_hash", "VARCHAR", "NO") in columns and all(row[columns.index(("entry_hash", "VARCHAR", "NO"))]
                                                            for row in rows)
    with Ledger.open(path) as ledger:
        assert ledger.scalar("SELECT max(version) FROM schema_migrations") == LATEST
        assert verify(ledger) == report and report.ok
        assert ledger.query("SELECT * FROM accruals ORDER BY entry_id") == rows  # nothing was rewritten
        assert ledger.query("SELECT * FROM audit_ledger ORDER BY entry_id") == audit
        ledger.append_batch(batch_of(ledger.load_book(), [1_000_000], first=10, offset=6,
                                     when=datetime(2026, 5, 3, tzinfo=timezone.utc)))
        assert ledger.query("SELECT entry_hash FROM accruals WHERE period = '2026-05'") == [(None,)]
        close_period(ledger, "2026-05", now=datetime(2026, 6, 2, tzinfo=timezone.utc), signer=SIGNER)
        after = verify(ledger)
        assert after.ok and after.closes == 2, after.problems
    _, columns_after, _, _ = accrual_rows_and_keys(path)
    assert ("entry_hash", "VARCHAR", "YES") in columns_after


def test_an_entry_booked_before_schema_14_is_still_compared_with_its_stored_digest(ledger_13):
    """An edit that leaves a stored digest behind is named by its row, besides its close's heads."""
    path, _ = ledger_13
    Ledger.open(path).close()  # migrates
    con = duckdb.connect(str(path))
    con.execute("UPDATE accruals SET amount = amount + 1 WHERE entry_id = 3")
    con.close()
    with Ledger.open(path, read_only=True) as ledger:
        problems = verify(ledger).problems
    assert problems[0].startswith("first changed entry: entry t/0@2#0 (row 3): stored hash"), problems
    assert any(p.startswith("close of 2026-04: stream t/0 folds to 6 entries") for p in problems), problems


def as_of_version_14(path):
    """Puts ``path`` back in the shape schema 14 left it: audit_ledger as migration 7 wrote it, no macros."""
    as_of_version_15(path)
    con = duckdb.connect(str(path))
    con.execute("BEGIN")
    con.execute(MIGRATIONS[7][MIGRATIONS[7].index("CREATE OR REPLACE VIEW audit_ledger"):])
    for (name,) in con.execute("SELECT function_name FROM duckdb_functions() WHERE function_type = 'macro'"
                               " AND database_name = current_database() AND NOT internal").fetchall():
        con.execute(f"DROP MACRO {name}")
    con.execute("DELETE FROM schema_migrations WHERE version = 15")
    con.execute("COMMIT")
    con.close()


def test_opening_a_schema_14_ledger_shows_auditors_every_entrys_digest(tmp_path, license_book_text):
    """Migration 15: audit_ledger.entry_hash, NULL for entries booked since schema 14, is their digest,
    computed by the view from the row; the entries themselves are not touched."""
    path, report = stepped_back(tmp_path, license_book_text, as_of_version_14)
    rows, _, _, audit = accrual_rows_and_keys(path)
    assert {row[21] for row in audit} == {None}  # what schema 14 showed auditors
    with Ledger.open(path) as ledger:
        assert ledger.scalar("SELECT max(version) FROM schema_migrations") == LATEST == 16
        assert ledger.query("SELECT * FROM accruals ORDER BY entry_id") == rows
        digests = ledger.query(f"SELECT entry_key, {', '.join(chain.ENTRY_FIELDS)} FROM audit_ledger ORDER BY entry_id")
        shown = ledger.query("SELECT entry_key, entry_hash FROM audit_ledger ORDER BY entry_id")
        assert verify(ledger) == report and report.ok
    assert shown == [(key, chain.digest(values)) for key, *values in digests] and len(shown) == len(rows) > 3


def _format_and_document_compression(path):
    con = duckdb.connect(str(path), read_only=True)
    try:
        tag = con.execute("SELECT tags['storage_version'] FROM duckdb_databases()"
                          " WHERE database_name = current_database()").fetchone()[0]
        compression = {row[0] for row in con.execute("SELECT compression FROM pragma_storage_info('statements')"
                                                     " WHERE column_name = 'document' AND segment_type <> 'VALIDITY'").fetchall()}
        rows = con.execute("SELECT * FROM statements ORDER BY statement_id").fetchall()
    finally:
        con.close()
    return tag, compression, rows


def test_a_new_ledger_file_is_written_in_duckdbs_v1_5_format_with_its_documents_compressed(tmp_path, license_book_text):
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as ledger:
        three_batches_and_a_closed_april(ledger, license_book_text)
        ledger.checkpoint()
    tag, compression, rows = _format_and_document_compression(path)
    assert tag.startswith(STORAGE_VERSION) and compression == {"ZSTD"} and len(rows) >= 1


def test_a_ledger_file_of_the_older_format_keeps_it_and_its_documents_as_they_were(tmp_path, license_book_text):
    path = tmp_path / "ledger.duckdb"
    duckdb.connect(str(path)).close()  # a file DuckDB wrote in its default format, as every ledger before
    with Ledger.open(path) as ledger:
        three_batches_and_a_closed_april(ledger, license_book_text)
        assert ledger.scalar("SELECT max(version) FROM schema_migrations") == LATEST == 16
        ledger.checkpoint()
        assert verify(ledger).ok
    tag, compression, rows = _format_and_document_compression(path)
    assert tag.startswith("v1.0.0") and "ZSTD" not in compression and len(rows) >= 1


def as_of_version_15(path):
    """Puts ``path`` back in the shape schema 15 left it: no version 16 (its documents' compression is
    not visible to SQL, so the tables stay; the migration rebuilds them again)."""
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM schema_migrations WHERE version = 16")
    con.close()


def test_opening_a_schema_15_ledger_rebuilds_its_document_tables_and_keeps_every_row(tmp_path, license_book_text):
    path, report = stepped_back(tmp_path, license_book_text, as_of_version_15)
    _, _, rows = _format_and_document_compression(path)
    with Ledger.open(path) as ledger:
        assert ledger.scalar("SELECT max(version) FROM schema_migrations") == LATEST
        assert verify(ledger) == report and report.ok
        keys = ledger.query("SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'statements'"
                            " AND constraint_type = 'PRIMARY KEY'")
        ledger.checkpoint()
    tag, compression, after = _format_and_document_compression(path)
    assert after == rows and len(rows) >= 1 and keys == [("PRIMARY KEY",)] and compression == {"ZSTD"}
