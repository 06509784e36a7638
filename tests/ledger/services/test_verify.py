"""`learnright verify` finds any single edited row and a truncated tail."""

from datetime import datetime, timezone

import duckdb
import pytest
from typer.testing import CliRunner

from learnright.cli import app
from ledger.services.close import close_period
from ledger.storage.store import Ledger
from ledger.services.verify import verify
from tests.ledger.keys import SIGNER
from tests.ledger.storage.test_store import batch_of

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def book_file(tmp_path, license_book_text):
    """A ledger with three batches (6 entries) and a closed April."""
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        book = ledger.load_book()
        for n in range(3):
            ledger.append_batch(batch_of(book, [1_000_000 * (n + 1), 7], first=2 * n, offset=2 * n))
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
    return path


def tamper(path, sql):
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()


def report_of(path):
    with Ledger.open(path, read_only=True) as ledger:
        return verify(ledger)


def test_an_untouched_ledger_verifies(book_file):
    report = report_of(book_file)
    assert report.ok, report.problems
    assert (report.entries, report.statements) == (6, 1)
    result = CliRunner().invoke(app, ["verify", "--db", str(book_file)])
    assert result.exit_code == 0 and "6 entries" in result.output and ": OK" in result.output


@pytest.mark.parametrize("column, value", [
    ("amount", "amount + 0.000000000001"),
    ("quantity", "quantity + 1"),
    ("source_id", "'src-photos'"),
    ("occurred_at", "occurred_at + INTERVAL 1 SECOND"),
    ("entry_hash", "'0' || substr(entry_hash, 2)"),
    ("description", "'hand-edited'"),
])
def test_changing_any_single_historical_row_is_reported(book_file, column, value):
    tamper(book_file, f"UPDATE accruals SET {column} = {value} WHERE entry_id = 3")
    report = report_of(book_file)
    assert not report.ok
    assert report.problems[0].startswith("first broken link at entry 3")
    result = CliRunner().invoke(app, ["verify", "--db", str(book_file)])
    assert result.exit_code == 1 and "first broken link at entry 3" in result.output


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


def test_a_carry_in_that_no_earlier_statement_carried_out_is_reported(book_file):
    tamper(book_file, "UPDATE statements SET carry_in = carry_in + 5, carry_out = carry_out + 5")
    problems = report_of(book_file).problems
    assert any("carry in 5" in p and "the previous statement carried out 0" in p for p in problems), problems
