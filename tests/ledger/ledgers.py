"""The small ledger that the verify and migration tests start from."""

from datetime import datetime, timezone

from ledger.services.close import close_period
from ledger.storage.store import Ledger
from tests.ledger.keys import SIGNER
from tests.ledger.storage.test_store import batch_of

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
"""When the tests' April is closed."""


def three_batches_and_a_closed_april(ledger: Ledger, book_text: str) -> None:
    """Applies ``book_text``, books three batches of two April events each (entries 1-6, offsets
    0-5) and closes April, signed by the tests' key."""
    ledger.apply_licenses(book_text, "book.toml")
    book = ledger.load_book()
    for n in range(3):
        ledger.append_batch(batch_of(book, [1_000_000 * (n + 1), 7], first=2 * n, offset=2 * n))
    close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
