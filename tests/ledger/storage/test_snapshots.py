"""Snapshots: the ledger as of one commit, with the audit views, and no trace of API tokens."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import duckdb

from ledger.storage.snapshots import EXCLUDED, TABLES, publish_snapshot
from ledger.storage.store import Ledger
from ledger.services.tokens import AUDITOR, HOLDER, create_token, revoke_token
from tests.learnright.books import book_two_holders

T0 = datetime(2026, 6, 2, tzinfo=timezone.utc)


def test_a_snapshot_file_holds_no_token_id_or_hash_not_even_in_freed_blocks(tmp_path, license_book_text):
    """300,000 token rows in the ledger; not one byte of an id, a label or a hash reaches a snapshot file.

    Copying the whole file and dropping the token tables left them in freed blocks.
    """
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    with Ledger.open(path) as ledger:
        ledger.con.execute("INSERT INTO api_tokens SELECT 'tok_' || lpad(i::VARCHAR, 12, 'z'), sha256('s' || i),"
                           " 'holder', 'h-ann', 'label-' || i, TIMESTAMPTZ '2026-06-01' FROM range(300000) t(i)")
        issued = create_token(ledger, role=AUDITOR, holder_id=None, now=T0)
        revoke_token(ledger, create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0).record.token_id, now=T0)
        ledger.con.execute("CHECKPOINT")
        hashes = {digest.encode() for (digest,) in ledger.query("SELECT secret_sha256 FROM api_tokens")}
        assert len(hashes) == 300002
        snapshot = publish_snapshot(ledger, tmp_path / "snapshots", now=T0)
    files = [p for p in snapshot.directory.rglob("*") if p.is_file()]
    assert snapshot.database in files
    for file in files:
        data = file.read_bytes()
        assert data.count(b"tok_") == 0, file
        assert data.count(b"label-") == 0, file
        assert not hashes & set(re.findall(rb"[0-9a-f]{64}", data)), file
        assert issued.token.split(".", 2)[2].encode() not in data


def test_a_snapshot_has_every_allowed_table_with_its_schema_and_the_audit_views(tmp_path, license_book_text):
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    with Ledger.open(path) as ledger:
        tables = {name for (name,) in ledger.query("SELECT table_name FROM duckdb_tables()")}
        # A table a migration adds must be put on one list or the other, deliberately.
        assert tables == set(TABLES) | set(EXCLUDED)
        snapshot = publish_snapshot(ledger, tmp_path / "snapshots", now=T0)
        ledger_schema = ledger.query("SELECT table_name, sql FROM duckdb_tables() ORDER BY ALL")
        counts = {name: ledger.query(f"SELECT count(*) FROM {name}")[0][0] for name in TABLES}
        last_entry = ledger.last_entry_id
    con = duckdb.connect(str(snapshot.database), read_only=True)
    assert con.execute("SELECT table_name, sql FROM duckdb_tables() ORDER BY ALL").fetchall() == [
        row for row in ledger_schema if row[0] not in EXCLUDED]
    assert {name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in TABLES} == counts
    assert con.execute("SELECT count(*) FILTER (WHERE NOT balanced), count(*) FROM audit_reconciliation"
                       ).fetchall() == [(0, 6)]
    assert {name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()} == {
        "audit_ledger", "audit_accruals", "audit_statement_lines", "audit_reconciliation"}
    manifest = snapshot.manifest()
    assert manifest["last_entry_id"] == last_entry
    assert not set(EXCLUDED) & set(manifest["tables"])
    assert set(manifest["tables"]) == set(TABLES) | {"audit_ledger", "audit_accruals", "audit_statement_lines",
                                                     "audit_reconciliation"}


def test_a_query_gets_the_latest_snapshot_while_it_covers_the_ledger_and_a_new_one_after(tmp_path, license_book_text):
    """Even an empty ledger (no entry, so no chain head in the manifest) is covered by its snapshot."""
    from ledger.storage.snapshots import CURRENT, PUBLISHED, snapshot_for_query

    path, directory = tmp_path / "ledger.duckdb", tmp_path / "snapshots"
    Ledger.open(path).close()
    first, why = snapshot_for_query(path, directory, now=T0)
    assert (why, first.last_entry_id, first.chain_head) == (PUBLISHED, 0, "")
    assert snapshot_for_query(path, directory, now=T0) == (first, CURRENT)
    with Ledger.open(path) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")  # rows, but no entry
    second, why = snapshot_for_query(path, directory, now=T0.replace(second=1))
    assert why == PUBLISHED and second != first and dict(second.tables)["license_versions"] == 3
