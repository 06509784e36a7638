"""`learnright verify` finds any single edited row, a dropped row, a truncated tail, a false root.

Entries booked by this version (format 3) have a digest computed from their own fields (not
stored from schema 14: tests/ledger/storage/test_migrations.py covers ledgers that stored it),
and every close commits to the heads of the streams it covers and a root over them; entries of
a ledger written before schema 7 (format 2) still verify in their global chain.
"""

import json
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import duckdb
import pytest
from typer.testing import CliRunner

from learnright.cli import app
from ledger.core import chain
from ledger.core.statements import stored_document_hash
from ledger.services.close import close_period
from ledger.storage.store import Ledger
from ledger.services.verify import verify
from tests.ledger.keys import SIGNER
from tests.ledger.ledgers import NOW, three_batches_and_a_closed_april
from tests.ledger.storage.test_store import batch_of



@pytest.fixture
def book_file(tmp_path, license_book_text):
    """A ledger with three batches (6 entries) and a closed April."""
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as ledger:
        three_batches_and_a_closed_april(ledger, license_book_text)
    return path


def tamper(path, sql, params=()):
    con = duckdb.connect(str(path))
    con.execute(sql, list(params))
    con.close()


def rehash(path, entry_id):
    """Gives row ``entry_id`` the digest of what it now holds, as a forger with the file would."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    (values,) = con.execute(f"SELECT {', '.join(chain.ENTRY_FIELDS)} FROM accruals WHERE entry_id = ?",
                            [entry_id]).fetchall()
    con.execute("UPDATE accruals SET entry_hash = ? WHERE entry_id = ?", [chain.digest(values), entry_id])
    con.close()


def report_of(path):
    with Ledger.open(path, read_only=True) as ledger:
        return verify(ledger)


def test_an_untouched_ledger_verifies(book_file):
    report = report_of(book_file)
    assert report.ok, report.problems
    assert (report.entries, report.closes, report.statements) == (6, 1, 1)
    with Ledger.open(book_file, read_only=True) as ledger:
        assert report.root == ledger.get_close("2026-04").root != ""
    result = CliRunner().invoke(app, ["verify", "--db", str(book_file)])
    assert result.exit_code == 0 and "6 entries" in result.output and ": OK" in result.output
    assert report.root in result.output


CHANGED_T0 = ("close of 2026-04: stream t/0 folds to 6 entries, head ", "but the close recorded 6 entries, head ",
              "an entry of t/0 it covers was changed, added or dropped")


def reported_by_its_stream_and_close(problems) -> bool:
    """The close covering row 3 (stream t/0) no longer matches: its stream's head, its root, its statement."""
    return (any(p.startswith(CHANGED_T0[0]) and CHANGED_T0[1] in p and CHANGED_T0[2] in p for p in problems)
            and any(p.startswith("close of 2026-04: its root recomputes to ") and p.endswith(" is stored")
                    for p in problems)
            and any("it carries close root" in p for p in problems))  # the signed statement disagrees too


@pytest.mark.parametrize("column, value", [
    ("amount", "amount + 0.000000000001"),
    ("quantity", "quantity + 1"),
    ("source_id", "'src-photos'"),
    ("occurred_at", "occurred_at + INTERVAL 1 SECOND"),
    ("description", "'hand-edited'"),
])
def test_changing_any_single_historical_row_is_reported(book_file, column, value):
    """Entries booked from schema 14 store no digest: the close that covers the row is what no longer matches."""
    tamper(book_file, f"UPDATE accruals SET {column} = {value} WHERE entry_id = 3")
    report = report_of(book_file)
    assert not report.ok
    assert reported_by_its_stream_and_close(report.problems), report.problems
    result = CliRunner().invoke(app, ["verify", "--db", str(book_file)])
    assert result.exit_code == 1 and "close of 2026-04: stream t/0 folds to" in result.output


def test_a_stored_digest_that_is_not_its_entrys_is_reported(book_file):
    """A digest stored beside a row (as before schema 14) must be the row's: verify compares it."""
    tamper(book_file, "UPDATE accruals SET entry_hash = ? WHERE entry_id = 3", ["0" * 64])
    report = report_of(book_file)
    assert report.problems == ("first changed entry: entry t/0@2#0 (row 3): stored hash 0000000000000000... but"
                               f" its content hashes to {report_digest(book_file, 3)[:16]}...",)
    result = CliRunner().invoke(app, ["verify", "--db", str(book_file)])
    assert result.exit_code == 1 and "first changed entry: entry t/0@2#0 (row 3)" in result.output


def report_digest(path, entry_id) -> str:
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        (values,) = con.execute(f"SELECT {', '.join(chain.ENTRY_FIELDS)} FROM accruals WHERE entry_id = ?",
                                [entry_id]).fetchall()
    finally:
        con.close()
    return chain.digest(values)


@pytest.mark.parametrize("column, value", [
    ("stream", "'t/1'"),
    ("position", "position + 100"),
    ("line", "line + 1"),
])
def test_re_keying_an_entry_is_reported(book_file, column, value):
    """An entry's identity is hashed: moving it to another place of the log changes its digest."""
    tamper(book_file, f"UPDATE accruals SET {column} = {value} WHERE entry_id = 3")
    problems = report_of(book_file).problems
    assert any(p.startswith("close of 2026-04: stream t/0 folds to ") and "the close recorded 6 entries" in p
               for p in problems), problems
    assert any(p.startswith("close of 2026-04: its root recomputes to ") for p in problems), problems


@pytest.mark.parametrize("column, value", [
    ("amount", "amount + 1"),
    ("description", "'hand-edited'"),  # changes no total: only the commitments see it
])
def test_an_entry_changed_with_its_hash_in_a_closed_month_is_reported_by_its_stream_and_close(
        book_file, column, value):
    tamper(book_file, f"UPDATE accruals SET {column} = {value} WHERE entry_id = 3")
    rehash(book_file, 3)
    problems = report_of(book_file).problems
    assert not any(p.startswith("first changed entry") for p in problems), problems  # its digest matches now
    assert any(p.startswith("close of 2026-04: stream t/0 folds to 6 entries, head ") and "but the close recorded 6"
               " entries, head " in p and "an entry of t/0 it covers was changed, added or dropped" in p
               for p in problems), problems
    assert any(p.startswith("close of 2026-04: its root recomputes to ") and p.endswith(" is stored")
               for p in problems), problems
    assert any("it carries close root" in p for p in problems), problems  # the signed statement disagrees too
    result = CliRunner().invoke(app, ["verify", "--db", str(book_file)])
    assert result.exit_code == 1 and "close of 2026-04: stream t/0 folds to" in result.output


def test_deleting_an_entry_of_a_closed_month_is_reported(book_file):
    tamper(book_file, "DELETE FROM accruals WHERE entry_id = 3")
    problems = report_of(book_file).problems
    assert problems[0] == "entry rows jump from 2 to 4: entries are missing", problems
    assert any(p.startswith("close of 2026-04: stream t/0 folds to 5 entries") and "the close recorded 6 entries" in p
               for p in problems), problems
    assert any(p.startswith("close of 2026-04: its root recomputes to ") for p in problems), problems


def test_deleting_an_entry_and_closing_up_the_row_numbers_is_still_reported(book_file):
    """Without a gap in the rows or an anchor file, the close's stream heads still show the loss."""
    con = duckdb.connect(str(book_file))
    con.execute("CREATE TEMP TABLE kept AS SELECT * FROM accruals WHERE entry_id > 3")
    con.execute("DELETE FROM accruals WHERE entry_id >= 3")
    con.execute("INSERT INTO accruals BY NAME SELECT * REPLACE (entry_id - 1 AS entry_id) FROM kept")
    con.execute("UPDATE period_closes SET last_entry_id = last_entry_id - 1")
    con.close()
    (book_file.parent / (book_file.name + ".anchor")).unlink()
    problems = report_of(book_file).problems
    assert not any("jump" in p or "truncated" in p for p in problems), problems
    assert any(p.startswith("close of 2026-04: stream t/0 folds to 5 entries") and "the close recorded 6 entries" in p
               for p in problems), problems


def test_a_statement_whose_close_root_does_not_match_is_reported(book_file):
    """A statement re-hashed around a false root (the signature aside) still disagrees with the ledger."""
    con = duckdb.connect(str(book_file))
    ((statement_id, text),) = con.execute("SELECT statement_id, document FROM statements").fetchall()
    document = json.loads(text)
    assert document["format_version"] >= 5, "statements carry the close root from format 5 on"
    true_root = document["ledger"]["close_root"]
    document["ledger"]["close_root"] = "f" * 64
    forged = json.dumps(document)
    con.execute("UPDATE statements SET document = ?, content_hash = ? WHERE statement_id = ?",
                [forged, stored_document_hash(forged), statement_id])
    con.close()
    problems = report_of(book_file).problems
    assert problems == (f"statement {statement_id} (2026-04, h-ann, USD): it carries close root ffffffffffffffff..."
                        f" but the ledger's entries give {true_root[:16]}...",)


def test_truncating_the_tail_is_reported_even_with_its_batches(book_file):
    tamper(book_file, "DELETE FROM accruals WHERE entry_id >= 5; DELETE FROM ingest_batches WHERE batch_id = 3;"
                      " DELETE FROM period_closes; DELETE FROM statements")
    problems = report_of(book_file).problems
    assert any("anchor file" in p and "tail was truncated" in p for p in problems), problems


def test_a_statement_that_no_longer_matches_the_ledger_is_reported(book_file):
    tamper(book_file, "UPDATE statements SET accrued = accrued + 1")
    problems = report_of(book_file).problems
    assert any("accrued" in p and "the ledger entries it covers sum to" in p for p in problems), problems


def test_statement_columns_must_match_the_signed_document_and_carry_must_chain(book_file):
    """Payouts and the next month's carry read these columns, not the document."""
    tamper(book_file, "UPDATE statements SET payable = payable - 10, carry_out = carry_out + 10")
    problems = report_of(book_file).problems
    assert any("payable" in p and "differs from its signed document" in p for p in problems), problems
    assert any("carry_out" in p and "differs from its signed document" in p for p in problems), problems


@pytest.mark.parametrize("change, says", [
    ("replace(parsed, '\"1.20\"', '\"1.99\"')", "is not what its text parses to; the book is read from the form"),
    ("'{\"format\": 1}'", "is not what its text parses to"),
    ("'[1'", "its stored parsed form (version 1) cannot be read"),
])
def test_a_parsed_license_form_that_is_not_its_documents_is_reported(book_file, change, says):
    """The book is read from the stored forms: a changed rate there would price a close differently
    from the documents (and the book hash) its close commits to."""
    tamper(book_file, f"UPDATE license_document_forms SET parsed = {change}")
    report = report_of(book_file)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("license document book.toml (") and says in report.problems[0]


def test_a_form_of_a_newer_version_is_reported_even_when_it_is_its_texts(book_file):
    """A form equal to what its text gives is not decoded again; one of a version this Learnright does
    not read is still refused, as a close would refuse it."""
    tamper(book_file, "UPDATE license_document_forms SET form_version = 99")
    (problem,) = report_of(book_file).problems
    assert problem.startswith("license document book.toml (") and "is version 99, written by a newer" in problem


def test_a_carry_in_that_no_earlier_statement_carried_out_is_reported(book_file):
    tamper(book_file, "UPDATE statements SET carry_in = carry_in + 5, carry_out = carry_out + 5")
    problems = report_of(book_file).problems
    assert any("carry in 5" in p and "the previous statement carried out 0" in p for p in problems), problems


# -- ledgers written before schema 7 (entry format 2) ----------------------------------------

MARCH = datetime(2026, 3, 20, tzinfo=timezone.utc)


def write_legacy_ledger(path, license_book_text):
    """A ledger as Learnright wrote it up to schema 6, with a direct connection.

        batch 1: e0 (h-ann, 1M tokens, USD 1.20) and e1 (h-bo, 10 items, JPY 50) of March
        close of 2026-03 at row 2, with its format-4 statements
        batch 2, after the close: e2 (late March usage, USD 2.40) and c3 voiding e1

    Entries have no stream; their hashes are the format-2 global chain, which the close,
    the batch rows and the anchor file record. Returns the chain heads by row number.
    """
    from ledger.core.license_file import parse_book
    from ledger.core.pricing import price
    from ledger.core.statements import StatementLine, build_statement, canonical_bytes, to_document
    from ledger.core.usage import TrainingUsage
    from ledger.storage.migrations import MIGRATIONS

    book = parse_book(license_book_text, "book.toml")
    usage = [("e0", "src-novels", 1_000_000, "tokens"), ("e1", "src-photos", 10, "items"),
             ("e2", "src-novels", 2_000_000, "tokens")]
    rows = []
    for batch_id, (event_id, source, units, unit) in zip((1, 1, 2), usage):
        (accrual,) = price(TrainingUsage(event_id=event_id, platform_id="p", model_id="m", run_id="r", source_id=source,
                                         units=units, unit=unit, occurred_at=MARCH), book)
        rows.append({"batch_id": batch_id, "accrual": accrual, "reverses_entry_id": None})
    voided = rows[1]["accrual"]
    rows.append({"batch_id": 2, "reverses_entry_id": 2, "accrual": replace(
        voided, event_id="c3", quantity=-voided.quantity, amount=-voided.amount)})
    values = [{"entry_id": n, **{name: getattr(row["accrual"], name) for name in chain.ENTRY_FIELDS_V2[1:]
                                 if name != "reverses_entry_id"}, "reverses_entry_id": row["reverses_entry_id"]}
              for n, row in enumerate(rows, start=1)]
    heads = dict(enumerate(chain.chain_v2(chain.GENESIS, [[v[name] for name in chain.ENTRY_FIELDS_V2] for v in values]),
                           start=1))

    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    for version in sorted(v for v in MIGRATIONS if v < 7):
        con.execute(MIGRATIONS[version])
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, '0.6.0')", [version, MARCH])
    con.execute("INSERT INTO license_documents VALUES ('d0', 'book.toml', ?, ?)", [license_book_text, MARCH])
    for v, row in zip(values, rows):
        columns = ["batch_id", "entry_hash", *v]
        con.execute(f"INSERT INTO accruals ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                    [row["batch_id"], heads[v["entry_id"]], *v.values()])
        con.execute("INSERT INTO usage_events VALUES ('p', ?, ?, ?, 'm', ?, '2026-03', 't', 0, ?, ?)",
                    [v["event_id"], "UsageCorrection" if v["reverses_entry_id"] else "TrainingUsage",
                     f"h{v['entry_id']}", MARCH, v["entry_id"] - 1, row["batch_id"]])
    closed_at = datetime(2026, 4, 2, tzinfo=timezone.utc)
    for batch_id, last in ((1, 2), (2, 4)):
        con.execute("INSERT INTO ingest_batches VALUES (?, ?, 2, 2, 0, 0, ?)", [batch_id, closed_at, heads[last]])
        con.execute("INSERT INTO consumer_offsets VALUES (?, 't', 0, ?)", [batch_id, last])
    con.execute("INSERT INTO period_closes VALUES ('2026-03', ?, 2, ?, 2)", [closed_at, heads[2]])
    for row in rows[:2]:
        a = row["accrual"]
        holder = book.holders[a.holder_id]
        statement = build_statement(
            period="2026-03", holder_id=a.holder_id, holder_name=holder.name, currency=a.currency,
            carry_in=Decimal(0), payout_minimum=holder.payout_minimum.get(a.currency, Decimal(0)), close_root="",
            lines=[StatementLine(period=a.period, source_id=a.source_id, platform_id=a.platform_id,
                                 model_id=a.model_id, kind=a.kind, unit=a.unit, quantity=a.quantity, rate=a.rate,
                                 per=a.per, amount=a.amount, entries=1, license_id=a.license_id,
                                 license_version=a.license_version)])
        document = to_document(replace(statement, format_version=4))
        document["ledger"] = {"chain_head": heads[2], "last_entry_id": 2}
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        s = statement
        con.execute("INSERT INTO statements (statement_id, period, holder_id, currency, format_version, accrued,"
                    " carry_in, payable, carry_out, content_hash, document, created_at, signature, key_fingerprint)"
                    " VALUES (?, ?, ?, ?, 4, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [s.statement_id, s.period, s.holder_id, s.currency, s.accrued, s.carry_in, s.payable, s.carry_out,
                     stored_document_hash(text), text, closed_at, SIGNER.sign(canonical_bytes(document)),
                     SIGNER.fingerprint])
    con.close()
    (path.parent / (path.name + ".anchor")).write_text(
        json.dumps({"format": 2, "last_entry_id": 4, "chain_head": heads[4]}))
    return heads


@pytest.fixture
def legacy_file(tmp_path, license_book_text):
    """A pre-schema-7 ledger (see write_legacy_ledger), migrated, then booked on and closed in format 3.

        offset 4: e4 (h-ann, 3M tokens of April); offset 5: c5 voiding e0 (a legacy entry)
        close of 2026-04, through close_period
    """
    from ledger.core.corrections import apply_correction
    from ledger.core.records import IngestBatch
    from ledger.core.usage import UsageCorrection

    path = tmp_path / "legacy.duckdb"
    heads = write_legacy_ledger(path, license_book_text)
    with Ledger.open(path) as ledger:  # migrates to the latest schema
        report = verify(ledger)
        assert report.ok, report.problems
        assert (report.entries, report.closes, report.statements, report.root) == (4, 1, 2, heads[2])
        assert ledger.corrections_of([("p", "e1")]) == {("p", "e1"): "c3"}  # the legacy reversal still counts

        book = ledger.load_book()
        ledger.append_batch(batch_of(book, [3_000_000], first=4, offset=4))
        ((key, original),) = ledger.booked_entries([("p", "e0")])[("p", "e0")]
        assert key == "entry:1"  # a legacy entry has no place in the log: it is named by its row
        void = UsageCorrection(event_id="c5", platform_id="p", corrects_event_id="e0", action="VOID",
                               occurred_at=datetime(2026, 4, 9, tzinfo=timezone.utc))
        reversals = apply_correction(void, ((key, original),), book)
        ledger.append_batch(IngestBatch(accruals=tuple(replace(a, stream="t/0", position=5) for a in reversals),
                                        offsets={("t", 0): 6}))
        assert ledger.corrections_of([("p", "e0")]) == {("p", "e0"): "c5"}  # so e0 cannot be corrected twice
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
    return path


def test_a_ledger_written_before_schema_7_still_verifies_and_closes_on(legacy_file):
    report = report_of(legacy_file)
    assert report.ok, report.problems
    assert (report.entries, report.closes, report.statements) == (6, 2, 4)
    with Ledger.open(legacy_file, read_only=True) as ledger:
        april = ledger.get_close("2026-04")
        assert report.root == april.root
        assert ledger.get_close("2026-03").root is None
        # The April close covers the legacy rows booked after March closed (e2, c3) in stream "legacy".
        assert {s: h.entries for s, h in ledger.close_streams("2026-04").items()} == {"legacy": 2, "t/0": 2}
        accrued = {(r.holder_id, r.currency): r.accrued for r in ledger.statement_rows(period="2026-04")}
    # h-ann: April 3.60 + late March 2.40 - e0 voided 1.20; h-bo: e1 voided (JPY 50).
    assert accrued == {("h-ann", "USD"): Decimal("4.8"), ("h-bo", "JPY"): Decimal("-50")}
    result = CliRunner().invoke(app, ["verify", "--db", str(legacy_file)])
    assert result.exit_code == 0 and "6 entries, 2 closes" in result.output and ": OK" in result.output


@pytest.mark.parametrize("entry_id", [2, 4])  # closed in format 2; covered by the format-3 close
def test_a_changed_legacy_entry_is_reported_as_the_first_broken_link(legacy_file, entry_id):
    tamper(legacy_file, "UPDATE accruals SET amount = amount + 1 WHERE entry_id = ?", [entry_id])
    problems = report_of(legacy_file).problems
    assert problems[0].startswith(f"first broken link at entry entry:{entry_id} (row {entry_id}): stored hash"), problems
    result = CliRunner().invoke(app, ["verify", "--db", str(legacy_file)])
    assert result.exit_code == 1 and f"first broken link at entry entry:{entry_id} (row {entry_id})" in result.output


def test_a_legacy_entry_changed_and_re_chained_is_reported_by_the_close_it_is_covered_by(legacy_file):
    """Re-chaining from the changed row on hides the edit from the format-2 chain, not from the format-3 close."""
    con = duckdb.connect(str(legacy_file))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("UPDATE accruals SET amount = amount + 1 WHERE entry_id = 4")
    (row_3,) = con.execute("SELECT entry_hash FROM accruals WHERE entry_id = 3").fetchall()
    (values,) = con.execute(f"SELECT {', '.join(chain.ENTRY_FIELDS_V2)} FROM accruals WHERE entry_id = 4").fetchall()
    (forged,) = chain.chain_v2(row_3[0], [values])
    con.execute("UPDATE accruals SET entry_hash = ? WHERE entry_id = 4", [forged])
    con.close()
    problems = report_of(legacy_file).problems
    assert not any(p.startswith("first broken link") for p in problems), problems
    assert any(p.startswith("close of 2026-04: stream legacy folds to 2 entries") for p in problems), problems
    assert any(p.startswith("close of 2026-04: its root recomputes to ") for p in problems), problems


# -- the native and the Python path, read in small batches ------------------------------------

TAMPERINGS = {
    "untouched": "SELECT 1",
    "an edited entry": "UPDATE accruals SET amount = amount + 1 WHERE entry_id = 3",
    "an edited entry with a stored digest": "UPDATE accruals SET entry_hash = repeat('0', 64) WHERE entry_id = 4;"
                                            " UPDATE accruals SET entry_hash = repeat('1', 64) WHERE entry_id = 2",
    "a deleted entry": "DELETE FROM accruals WHERE entry_id = 3",
    "two entries' places swapped": "UPDATE accruals SET position = 7 - position WHERE entry_id IN (3, 4)",
    "rows stored out of their numbers' order": "CREATE TEMP TABLE moved AS SELECT * FROM accruals WHERE entry_id = 2;"
                                               " DELETE FROM accruals WHERE entry_id = 2;"
                                               " INSERT INTO accruals SELECT * FROM moved",
    "a changed statement": "UPDATE statements SET accrued = accrued + 1, carry_in = carry_in + 5",
}


def verify_by(path, *, python: bool, chunk: int, monkeypatch):
    """The report with learnright_native (or without: the Python fallback), reading ``chunk`` rows at a time."""
    from ledger.storage import audit, entry_digests, statements
    with monkeypatch.context() as patched:
        if python:
            patched.setattr(entry_digests, "_native", None)
        patched.setattr(audit, "CHUNK", chunk)
        patched.setattr(statements, "CHUNK", chunk)
        return report_of(path)


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_the_native_and_the_python_path_find_the_same_in_batches_of_any_size(book_file, tampering, monkeypatch):
    """Digests computed natively or by ``chain.digest``, entries and statements read a few at a time or
    all at once: the same report, problem for problem (a batch boundary hides no jump in the row numbers)."""
    from ledger.storage import entry_digests
    native = entry_digests._native is not None  # without the build, the Python path's batch sizes still count
    tamper(book_file, TAMPERINGS[tampering])
    if tampering == "an edited entry with a stored digest":
        rehash(book_file, 3)  # stored digests of rows 2 and 4 are false: row 2 is the first changed
    whole = verify_by(book_file, python=not native, chunk=65_536, monkeypatch=monkeypatch)
    paths = [(True, 65_536), (False, 1), (True, 2), (False, 4)] if native else [(True, 1), (True, 2), (True, 4)]
    for python, chunk in paths:
        assert verify_by(book_file, python=python, chunk=chunk, monkeypatch=monkeypatch) == whole, (python, chunk)
    assert whole.ok == (tampering in ("untouched", "rows stored out of their numbers' order")), whole.problems
    if tampering == "a deleted entry":
        assert whole.problems[0] == "entry rows jump from 2 to 4: entries are missing"
    if tampering == "an edited entry with a stored digest":
        assert whole.problems[0].startswith("first changed entry: entry t/0@1#0 (row 2): stored hash 1111111111111111...")
    if tampering == "two entries' places swapped":
        assert any(p.startswith("close of 2026-04: stream t/0 folds to 6 entries") for p in whole.problems)
