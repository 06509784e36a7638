"""A close whose statements are built by worker processes runs three things beside its own thread: the
fold of the covered entries (the root), the statement lines' GROUP BY (both on threads aside) and the
workers. A failure in any of them fails the close, which then stores nothing, and the close run again
stores the golden bytes."""

from __future__ import annotations

import pytest

from ledger.errors import LedgerFileError
from ledger.services.close import close_period
from ledger.services.statement_workers import RangeWork
from ledger.storage import licenses
from tests.ledger.services.test_golden_book import GOLDEN, NOW, SIGNER, book_ledger, documents  # noqa: F401

PERIOD = "2026-04"


def failing_range(work: RangeWork) -> list:
    """A worker's range that fails (module level: a spawned worker imports it by name)."""
    raise LedgerFileError(f"range up to {work.lines.last_key if work.lines else 'the end'} failed in a worker")


def stored(ledger) -> tuple:
    """What a close stores: its row, statements, appended period entries and stream heads."""
    return (ledger.get_close(PERIOD), ledger.scalar("SELECT count(*) FROM statements"),
            ledger.scalar("SELECT count(*) FROM accruals"), ledger.close_streams(PERIOD))


def closes_again_to_the_golden_bytes(ledger) -> None:
    outcome = close_period(ledger, PERIOD, now=NOW, signer=SIGNER, workers=2)
    expected = {path.stem: path.read_text() for path in GOLDEN.glob(f"{PERIOD}_*.json")}
    assert documents(ledger, PERIOD) == expected and len(outcome.statement_ids) == len(expected)


def fails_storing_nothing_then_closes_to_the_golden_bytes(ledger, monkeypatch, match: str) -> None:
    """The close (with what ``monkeypatch`` broke) fails with ``match``, stores nothing, and once mended
    closes to the golden bytes."""
    before = stored(ledger)
    with pytest.raises(LedgerFileError, match=match):
        close_period(ledger, PERIOD, now=NOW, signer=SIGNER, workers=2)
    assert stored(ledger) == before
    monkeypatch.undo()
    closes_again_to_the_golden_bytes(ledger)


def test_a_fold_that_fails_stores_nothing(book_ledger, monkeypatch):
    def fold(*args, **kwargs):
        raise LedgerFileError("the fold failed")

    monkeypatch.setattr(book_ledger, "covered_heads", fold)
    fails_storing_nothing_then_closes_to_the_golden_bytes(book_ledger, monkeypatch, "the fold failed")


def test_statement_lines_that_fail_aside_store_nothing(book_ledger, monkeypatch):
    """The GROUP BY runs on a thread beside the fold: its error is the close's, raised in its transaction."""
    ranges = book_ledger.statement_line_ranges

    def failing(*args):
        yield next(ranges(*args))
        raise LedgerFileError("statement lines failed after one range")

    monkeypatch.setattr("ledger.storage.closes.RANGE_LINES", 3)
    monkeypatch.setattr(book_ledger, "statement_line_ranges", failing)
    fails_storing_nothing_then_closes_to_the_golden_bytes(book_ledger, monkeypatch, "after one range")


def test_a_worker_that_fails_stores_nothing(book_ledger, monkeypatch):
    monkeypatch.setattr("ledger.services.statement_workers._signed_range", failing_range)
    fails_storing_nothing_then_closes_to_the_golden_bytes(book_ledger, monkeypatch, "failed in a worker")


def test_a_close_keeps_the_book_in_the_process_only_if_it_was_kept_before(book_ledger):
    """``load_book(keep=False)``, the close's read: a book made by it is not kept, one kept before is returned."""
    licenses._PARSED.clear()  # as in a process that has not read the book (apply_licenses keeps the one it made)
    made = book_ledger.load_book(keep=False)
    assert book_ledger.load_book(keep=False) is not made  # made again: not kept
    kept = book_ledger.load_book()
    assert book_ledger.load_book(keep=False) is kept and book_ledger.load_book() is kept
    assert made == kept
