"""The ledger file: batches with offsets, entry digests, dedupe lookups, close idempotency."""

import json
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import duckdb
import pytest

from ledger.core import chain
from ledger.services.close import close_period, statement_file
from ledger.core.corrections import apply_correction
from ledger.errors import LedgerVersionError, PeriodError
from ledger.core.pricing import price
from ledger.core.records import EventRow, IngestBatch
from ledger.storage.store import Ledger
from ledger.core.usage import TrainingUsage, UsageCorrection
from ledger.services.verify import verify
from tests.ledger.keys import SIGNER

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def batch_of(book, units_list, first=0, when=datetime(2026, 4, 2, tzinfo=timezone.utc), offset=0):
    """Events e<first>... at offsets <offset>... of t/0, priced and keyed by their records."""
    events, accruals = [], []
    for n, units in enumerate(units_list, start=first):
        at = offset + n - first
        event = TrainingUsage(event_id=f"e{n}", platform_id="p", model_id="m", run_id="r", source_id="src-novels",
                              units=units, unit="tokens", occurred_at=when)
        accruals.extend(replace(a, stream="t/0", position=at) for a in price(event, book))
        events.append(EventRow(platform_id="p", event_id=event.event_id, event_type="TrainingUsage",
                               content_hash=f"h{n}", model_id="m", occurred_at=when, period=when.strftime("%Y-%m"),
                               topic="t", partition=0, offset=at))
    return IngestBatch(events=tuple(events), accruals=tuple(accruals),
                       offsets={("t", 0): offset + len(units_list)})


@pytest.fixture
def ledger(tmp_path, license_book_text):
    with Ledger.open(tmp_path / "ledger.duckdb") as opened:
        opened.apply_licenses(license_book_text, "book.toml")
        yield opened


def test_batch_rows_offsets_and_digests_land_together(ledger):
    book = ledger.load_book()
    result = ledger.append_batch(batch_of(book, [1_000_000, 2_500_000]))
    assert (result.first_entry_id, result.last_entry_id) == (1, 2)
    assert ledger.stored_offsets() == {("t", 0): 2}
    assert ledger.query("SELECT sum(amount) FROM accruals")[0][0] == Decimal("4.2")  # 3.5M x 1.20 / 1M
    rows = ledger.query(f"SELECT {', '.join(chain.ENTRY_FIELDS)}, entry_hash FROM accruals ORDER BY entry_id")
    assert [r[-1] for r in rows] == [None, None]  # schema 14: digests are computed from the fields, not stored
    assert [chain.entry_key(*r[:3]) for r in rows] == ["t/0@0#0", "t/0@1#0"]
    assert ledger.known_events([("p", "e1"), ("p", "nope")]) == {("p", "e1"): "h1"}


def test_an_entry_without_a_stream_is_refused_and_nothing_is_stored(ledger):
    from ledger.errors import EntryOriginError

    batch = batch_of(ledger.load_book(), [1_000_000])
    unkeyed = replace(batch, accruals=tuple(replace(a, stream="") for a in batch.accruals))
    with pytest.raises(EntryOriginError, match="has no stream"):
        ledger.append_batch(unkeyed)
    assert ledger.scalar("SELECT count(*) FROM accruals") == 0
    assert ledger.stored_offsets() == {}


def test_numbering_continues_across_reopen_and_hashes_do_not_depend_on_it(tmp_path, license_book_text):
    """Row numbers are local; the hash of an entry is the same whatever row it lands in."""
    path, other = tmp_path / "l.duckdb", tmp_path / "other.duckdb"
    with Ledger.open(path) as first:
        first.apply_licenses(license_book_text, "b")
        first.append_batch(batch_of(first.load_book(), [10]))
    with Ledger.open(path) as again:
        result = again.append_batch(batch_of(again.load_book(), [20], first=1, offset=1))
        assert (result.first_entry_id, result.last_entry_id) == (2, 2)
        hashes = digests_by_event(again)
    with Ledger.open(other) as reordered:  # the same records, booked in the other order and batching
        reordered.apply_licenses(license_book_text, "b")
        book = reordered.load_book()
        later, earlier = batch_of(book, [20], first=1, offset=1), batch_of(book, [10])
        reordered.append_batch(replace(later, events=later.events + earlier.events,
                                       accruals=later.accruals + earlier.accruals, offsets={("t", 0): 2}))
        assert reordered.query("SELECT event_id, entry_id FROM accruals ORDER BY event_id") == [("e0", 2), ("e1", 1)]
        assert digests_by_event(reordered) == hashes


def digests_by_event(ledger) -> list[tuple[str, str]]:
    """(event id, digest computed from the stored fields) of every entry."""
    rows = ledger.query(f"SELECT event_id, {', '.join(chain.ENTRY_FIELDS)} FROM accruals ORDER BY event_id")
    return [(row[0], chain.digest(row[1:])) for row in rows]


def test_second_writer_is_refused_with_a_clear_error(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "l.duckdb"
    with Ledger.open(path):
        code = f"from ledger.storage.store import Ledger\nLedger.open({str(path)!r})"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "LedgerLockedError" in result.stderr and "held by another process" in result.stderr


def test_newer_ledger_is_refused(tmp_path):
    path = tmp_path / "l.duckdb"
    Ledger.open(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations VALUES (999, now(), '9.9.9')")
    con.close()
    with pytest.raises(LedgerVersionError, match="schema version 999, written by a newer Learnright"):
        Ledger.open(path)


def test_close_is_idempotent_and_carries_the_residual(ledger):
    book = ledger.load_book()
    ledger.append_batch(batch_of(book, [1_000_001, 1_000_001]))  # 2 x 1.2000012 = 2.4000024 USD
    first = close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
    again = close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
    assert again.already_closed and again.statement_ids == first.statement_ids
    (row,) = ledger.statement_rows(period="2026-04")
    assert (row.holder_id, row.currency, row.accrued, row.carry_in, row.payable) == (
        "h-ann", "USD", Decimal("2.4000024"), 0, Decimal("2.40"))
    assert row.carry_out == Decimal("0.0000024")


def test_late_usage_and_a_correction_of_a_closed_month_are_adjustments_next_month(ledger):
    book = ledger.load_book()
    ledger.append_batch(batch_of(book, [1_000_000]))
    close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
    (before,) = ledger.statement_rows(period="2026-04")
    april_file = statement_file(ledger, before.statement_id)
    ledger.append_batch(batch_of(book, [2_000_000], first=1, offset=1))  # April usage, after April closed
    ledger.append_batch(batch_of(book, [1_000_000], first=2, offset=2, when=datetime(2026, 5, 3, tzinfo=timezone.utc)))
    # A correction at offset 3, after April closed, voiding April's first event (e0: 1M tokens, USD 1.20).
    ((key, original),) = ledger.booked_entries([("p", "e0")])[("p", "e0")]
    assert key == "t/0@0#0"
    void = UsageCorrection(event_id="c1", platform_id="p", corrects_event_id="e0", action="VOID",
                           occurred_at=datetime(2026, 5, 9, tzinfo=timezone.utc))
    reversals = apply_correction(void, ((key, original),), book)
    ledger.append_batch(IngestBatch(accruals=tuple(replace(a, stream="t/0", position=3) for a in reversals),
                                    offsets={("t", 0): 4}))
    assert ledger.corrections_of([("p", "e0")]) == {("p", "e0"): "c1"}
    close_period(ledger, "2026-05", now=NOW, signer=SIGNER)
    assert ledger.statement_rows(period="2026-04") == [before]  # same totals and content hash
    assert statement_file(ledger, before.statement_id) == april_file  # same bytes and signature
    (may,) = ledger.statement_rows(period="2026-05")
    assert may.accrued == Decimal("2.4")  # 1.2 of May + 2.4 of April booked late - 1.2 of April voided
    document = json.loads(ledger.statement_document(may.statement_id).document)
    assert [(l["period"], l["prior_period_adjustment"], Decimal(l["amount"])) for l in document["lines"]] == [
        ("2026-05", False, Decimal("1.2")), ("2026-04", True, Decimal("1.2"))]  # April's late + void, summed
    assert document["lines"][1]["entries"] == 2
    assert verify(ledger).ok


def test_open_months_cannot_close_and_closed_order_holds(ledger):
    with pytest.raises(PeriodError, match="2026-06 has not ended"):
        close_period(ledger, "2026-06", now=NOW, signer=SIGNER)
    close_period(ledger, "2026-05", now=NOW, signer=SIGNER)
    with pytest.raises(PeriodError, match="the later period 2026-05 is closed already"):
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)


def test_a_month_without_usage_between_closes_is_closed_too(ledger):
    """A month with no usage still closes (it can owe a minimum or carry a balance)."""
    book = ledger.load_book()
    ledger.append_batch(batch_of(book, [1_000_000]))  # April
    close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
    ledger.append_batch(batch_of(book, [1_000_000], first=1, offset=1, when=datetime(2026, 6, 3, tzinfo=timezone.utc)))
    outcome = close_period(ledger, "2026-06", now=datetime(2026, 7, 1, tzinfo=timezone.utc), signer=SIGNER)
    assert outcome.closed_periods == ("2026-05", "2026-06")
    assert [p for (p,) in ledger.query("SELECT period FROM period_closes ORDER BY period")] == ["2026-04", "2026-05", "2026-06"]


def test_amounts_beyond_28_digits_are_booked_and_chained_exactly(ledger):
    """DECIMAL(38,12) holds amounts Python's default 28-digit context cannot quantize."""
    from ledger.services.verify import verify

    event = TrainingUsage(event_id="big", platform_id="p", model_id="m", run_id="r", source_id="src-photos",
                          units=9_000_000_000_000_000_001, unit="items", occurred_at=datetime(2026, 4, 2, tzinfo=timezone.utc))
    accruals = price(event, ledger.load_book())  # 5 JPY per item
    ledger.append_batch(IngestBatch(accruals=tuple(replace(a, stream="t/0") for a in accruals), offsets={("t", 0): 1}))
    assert ledger.query("SELECT amount FROM accruals")[0][0] == Decimal("45000000000000000005")
    assert verify(ledger).ok


def test_an_accruals_digest_is_the_digest_of_its_entry_fields():
    """``chain.digest_accruals`` (what tests compare the native digests with) is ``chain.digest`` of each row,
    and those digests are pinned: a change to the entry format's bytes (escapes, decimals, times) fails here."""
    from ledger.core.pricing import Accrual

    base = Accrual(platform_id='p"\\x', event_id="é☃", line=3, kind="training", source_id="s", holder_id="h",
                   model_id="m\n", license_id="l", license_version=2, quantity=Decimal("0"), unit="tokens",
                   rate=Decimal("0.0000012"), per=1_000_000, currency="USD", amount=Decimal("-12.5"),
                   occurred_at=datetime(2026, 4, 2, 3, 4, 5, 678901, tzinfo=timezone.utc), period="2026-04",
                   stream="usage.training/3", position=41)
    accruals = [base, replace(base, reverses_entry_key='t/0@7#0', description='how "it" was computed'),
                replace(base, amount=Decimal("11111111021106000001.234567891234"), stream='clo"se/☃', position=2**40)]
    rows = [tuple(getattr(a, name) for name in chain.ENTRY_FIELDS) for a in accruals]
    assert chain.digest_accruals(accruals) == [chain.digest(row) for row in rows]
    assert len(set(chain.digest_accruals(accruals))) == 3
    assert chain.digest_accruals(accruals) == [
        "c81b76cd0d8a545564bfd58f6d35fe4c9f94cb158578072d02ee5a5b30fe84a3",
        "b45eece37cf4c2475bf3362f2883dbe37899fb1234e7bc140b2569a0842c9887",
        "7b068fea155652414e336408227d766532c018cdaf71d386c3266e09d4d4dd78",
    ]


@pytest.mark.parametrize("sql", [
    "INSERT INTO accruals SELECT * FROM accruals",
    "UPDATE accruals SET amount = 0",
    "DELETE FROM accruals",
    "DROP TABLE accruals",
    "CHECKPOINT",
    "SELECT 1; DELETE FROM accruals",
    "WITH gone AS (DELETE FROM accruals RETURNING entry_id) SELECT * FROM gone",
])
def test_query_only_reads_the_append_only_ledger(ledger, sql):
    from ledger.storage.sql import SqlRefusedError

    ledger.append_batch(batch_of(ledger.load_book(), [1_000_000]))
    with pytest.raises(SqlRefusedError, match="Ledger.query only reads"):
        ledger.query(sql)
    assert ledger.scalar("SELECT count(*) FROM accruals WHERE amount > 0") == 1
    assert verify(ledger).ok


def test_applied_versions_are_stored_whole_and_the_applied_book_is_the_parsed_one(tmp_path, license_book_text):
    from ledger.core.license_file import parse_book
    from ledger.core.licenses import merge_books
    from ledger.storage import licenses

    extra = license_book_text.replace('id = "lic-novels"', 'id = "lic-novels-2"', 1)
    with Ledger.open(tmp_path / "ledger.duckdb") as opened:
        opened.apply_licenses(license_book_text, "book.toml")
        applied, added = opened.apply_licenses(extra, "more.toml")
        stored = opened.con.execute("SELECT license_id, version, source_id, platform_id, effective_from, currency,"
                                    " terms::VARCHAR, content_hash FROM license_versions ORDER BY ALL").fetchall()
        cached = opened.load_book()
        licenses._PARSED.clear()  # what another process parses from the same documents
        parsed = opened.load_book()
    assert added == 1 and cached is applied and parsed == applied
    assert parsed == merge_books(parse_book(license_book_text, "book.toml"), parse_book(extra, "more.toml"))
    assert stored == sorted((v.license_id, v.version, v.source_id, v.platform_id, v.effective_from, v.currency,
                             json.dumps(v.terms, sort_keys=True), v.content_hash) for v in parsed.versions)


def test_a_checkpoint_without_vacuum_leaves_its_row_groups_for_the_next_checkpoint_to_merge(tmp_path):
    """What a caught-up consumer's short checkpoints rely on (consumers.checkpoints): with ``vacuum``
    off a checkpoint writes its rows as a row group of their own and merges nothing; the next one
    with the vacuum on (and rows to write) merges them; the rows are the same throughout."""
    with Ledger.open(tmp_path / "l.duckdb") as ledger:
        ledger.con.execute("CREATE TABLE t (n BIGINT, s VARCHAR)")

        def row_groups() -> int:
            return ledger.scalar("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')")

        vacuum_tasks = "SELECT current_setting('max_vacuum_tasks')"
        before = ledger.scalar(vacuum_tasks)
        for step in range(4):
            ledger.con.execute(f"INSERT INTO t SELECT i, 'row ' || i FROM range({step * 1000}, {step * 1000 + 1000}) r(i)")
            ledger.checkpoint(vacuum=False)
            assert ledger.wal_bytes() == 0
            assert row_groups() == step + 1  # one more each time: nothing merged
            assert ledger.scalar(vacuum_tasks) == before  # set back after the checkpoint
        ledger.con.execute("INSERT INTO t SELECT i, 'row ' || i FROM range(4000, 5000) r(i)")
        ledger.checkpoint()
        assert row_groups() == 1  # the vacuum merged what the others left, and the new rows
        assert ledger.query("SELECT count(*), count(DISTINCT n), sum(n) FROM t") == [(5000, 5000, sum(range(5000)))]


def test_the_wal_threshold_is_set_read_back_and_restored_and_a_checkpoint_empties_the_wal(tmp_path, license_book_text):
    from ground.errors import ConfigError

    with Ledger.open(tmp_path / "l.duckdb") as ledger:
        shown = "SELECT value FROM duckdb_settings() WHERE name = 'checkpoint_threshold'"
        assert ledger.limit_wal(2**30) == 16 * 2**20  # DuckDB's default, which it replaced
        assert ledger.scalar(shown) == "1.0 GiB"
        ledger.apply_licenses(license_book_text, "book.toml")
        assert ledger.wal_bytes() > 0  # committed, not checkpointed: in the log alone
        ledger.checkpoint()
        assert ledger.wal_bytes() == 0
        assert ledger.limit_wal(16 * 2**20) == 2**30  # as last set here
        assert ledger.scalar(shown) == "16.0 MiB"
        with pytest.raises(ConfigError, match="got 0"):
            ledger.limit_wal(0)
