"""Snapshots: the ledger as of one commit, with the audit views, and no trace of API tokens."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb

from ledger.core import chain
from ledger.storage.snapshots import EXCLUDED, TABLES, publish_snapshot
from ledger.storage.store import Ledger
from ledger.services.tokens import AUDITOR, HOLDER, create_token, revoke_token
from tests.learnright.books import book_two_holders, close

T0 = datetime(2026, 6, 2, tzinfo=timezone.utc)
ESCAPED_ENTRY = ("SELECT entry_canonical('s', 1, 0, 'p\"\\' || chr(1) || chr(10), 'e', 'k', 's', 'h', NULL, 'l', 1,"
                 " 0.0000001, 'u', 1.5, 1, 'USD', -12.5, TIMESTAMPTZ '2026-01-01 00:00:00+00', '2026-01', NULL, '')")


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
        audit = ledger.query("SELECT * FROM audit_ledger ORDER BY entry_id")
        escaped = ledger.query(ESCAPED_ENTRY)
    con = duckdb.connect(str(snapshot.database), read_only=True)
    assert con.execute("SELECT table_name, sql FROM duckdb_tables() ORDER BY ALL").fetchall() == [
        row for row in ledger_schema if row[0] not in EXCLUDED]
    assert {name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in TABLES} == counts
    assert con.execute("SELECT count(*) FILTER (WHERE NOT balanced), count(*) FROM audit_reconciliation"
                       ).fetchall() == [(0, 6)]
    views = {"audit_ledger", "audit_accruals", "audit_statement_lines", "audit_reconciliation",
             "audit_collective_members", "audit_distribution_rules", "audit_member_statements",
             "audit_distribution_reconciliation"}
    assert {name for (name,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()} == views
    # audit_ledger's digests, computed by the macros the snapshot was given (migration 15)
    assert con.execute("SELECT * FROM audit_ledger ORDER BY entry_id").fetchall() == audit
    assert audit and None not in {row[21] for row in audit}
    assert con.execute(ESCAPED_ENTRY).fetchall() == escaped == [(chain.canonical([  # the escaping branch too
        "s", 1, 0, 'p"\\\x01\n', "e", "k", "s", "h", None, "l", 1, Decimal("0.0000001"), "u", Decimal("1.5"), 1, "USD",
        Decimal("-12.5"), datetime(2026, 1, 1, tzinfo=timezone.utc), "2026-01", None, ""]).decode(),)]
    manifest = snapshot.manifest()
    assert manifest["last_entry_id"] == last_entry
    assert not set(EXCLUDED) & set(manifest["tables"])
    assert set(manifest["tables"]) == set(TABLES) | views


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


def test_retention_keeps_the_last_n_the_first_snapshot_after_each_close_and_latest():
    """Ten snapshots a, b, ... j over three closes; keep_last=3.

        a        no close yet               pruned: no close, not among the last three
        b c d    last close 2026-03         b kept: the first to cover 2026-03
        e f      last close 2026-04         e kept: the first to cover 2026-04
        g h i j  last close 2026-05         g kept (first for 2026-05); h i j: the last three

    ``LATEST`` is kept even when it is not among the newest by time (a clock set back).
    """
    from ledger.storage.snapshots import CloseMark, Snapshot, retained

    def mark(period):
        return CloseMark(period=period, root=f"root-{period}", closed_at=datetime(2026, 6, 1, tzinfo=timezone.utc))

    closes = [None, "2026-03", "2026-03", "2026-03", "2026-04", "2026-04", "2026-05", "2026-05", "2026-05", "2026-05"]
    snapshots = [Snapshot(snapshot_id=name, directory=Path("/nowhere") / name, created_at=T0.replace(second=n),
                          last_entry_id=n, chain_head="", tables=(), last_close=period and mark(period))
                 for n, (name, period) in enumerate(zip("abcdefghij", closes))]
    assert retained(snapshots, keep_last=3, latest_id="j") == set("begij") | {"h"}
    assert retained(reversed(snapshots), keep_last=1, latest_id="c") == set("begj") | {"c"}
    assert retained(snapshots[:2], keep_last=5, latest_id="b") == {"a", "b"}


def test_each_publish_prunes_to_the_last_n_plus_one_per_close_but_not_a_held_snapshot(tmp_path, license_book_text):
    """keep_last=2; closes of 2026-05 and 2026-06 made between publishes (the book closed up to 2026-04).

        s1 s2        last close 2026-04    s1 kept: first after 2026-04
        s3 s4 s5     last close 2026-05    s3 kept; s4 is held by a reader until after s8
        s6 s7 s8 s9  last close 2026-06    s6 kept; the last two
    """
    from ledger.storage.snapshots import holding, latest_snapshot, list_snapshots, read_snapshot

    path, directory = book_two_holders(tmp_path / "ledger.duckdb", license_book_text), tmp_path / "snapshots"
    published = {}
    with Ledger.open(path) as ledger:
        def publish(n):
            published[n] = publish_snapshot(ledger, directory, now=T0.replace(second=n), keep_last=2)

        publish(1)
        publish(2)
        close(ledger, "2026-05", now=datetime(2026, 6, 1, tzinfo=timezone.utc))
        for n in (3, 4, 5):
            publish(n)
        with holding(lambda: read_snapshot(directory, published[4].snapshot_id)) as held:
            assert held == published[4]
            close(ledger, "2026-06", now=datetime(2026, 7, 1, tzinfo=timezone.utc))
            for n in (6, 7, 8):
                publish(n)
            ids = {s.snapshot_id for s in list_snapshots(directory)}
            assert ids == {published[n].snapshot_id for n in (1, 3, 4, 6, 7, 8)}
            assert held.database.exists()  # the reader's snapshot is still there to read
        publish(9)
        closes = {n: ledger.get_close(p) for n, p in ((1, "2026-04"), (3, "2026-05"), (6, "2026-06"))}
    remaining = list_snapshots(directory)
    assert [s.snapshot_id for s in remaining] == [published[n].snapshot_id for n in (1, 3, 6, 8, 9)]
    for n, close_record in closes.items():
        assert published[n].last_close.period == close_record.period
        assert published[n].last_close.root == close_record.root and close_record.root
    assert latest_snapshot(directory) == published[9]
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # nothing left half-pruned


def test_a_manifest_names_the_last_close_and_an_older_manifest_without_it_is_read_from_its_parquet(
        tmp_path, license_book_text):
    from ledger.storage.snapshots import MANIFEST, read_snapshot

    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    with Ledger.open(path) as ledger:
        snapshot = publish_snapshot(ledger, tmp_path / "snapshots", now=T0)
        april = ledger.get_close("2026-04")
    manifest = json.loads((snapshot.directory / MANIFEST).read_text())
    assert manifest["last_close"] == {"period": "2026-04", "root": april.root,
                                      "closed_at": april.closed_at.astimezone(timezone.utc).isoformat()}
    old = {k: v for k, v in manifest.items() if k != "last_close"}  # as written before the field existed
    (snapshot.directory / MANIFEST).chmod(0o644)
    (snapshot.directory / MANIFEST).write_text(json.dumps(old))
    again = read_snapshot(tmp_path / "snapshots", snapshot.snapshot_id)
    assert again == snapshot and again.last_close.root == april.root


def test_holding_the_latest_picks_again_when_the_one_it_picked_was_pruned(tmp_path, license_book_text):
    """The race of a reader that read LATEST just before a publish moved it on and pruned the old one."""
    from ledger.storage.snapshots import holding, latest_snapshot

    path, directory = book_two_holders(tmp_path / "ledger.duckdb", license_book_text), tmp_path / "snapshots"
    with Ledger.open(path) as ledger:
        old = publish_snapshot(ledger, directory, now=T0)
        close(ledger, "2026-05", now=datetime(2026, 6, 1, tzinfo=timezone.utc))
        new = publish_snapshot(ledger, directory, now=T0.replace(second=1))
    shutil.rmtree(old.directory)  # as a prune in another process would, after the reader picked it
    picks = iter([old])
    with holding(lambda: next(picks, None) or latest_snapshot(directory)) as held:
        assert held == new
