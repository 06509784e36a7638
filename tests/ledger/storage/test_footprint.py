"""Where a ledger file's bytes are: tables and columns add up to the blocks the file uses."""

import pytest

from ledger.errors import LedgerFileError
from ledger.storage.footprint import footprint
from ledger.storage.store import Ledger
from tests.ledger.storage.test_store import batch_of


def test_a_footprint_names_each_table_with_rows_and_its_columns_sum_within_the_used_blocks(tmp_path, license_book_text):
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        ledger.append_batch(batch_of(ledger.load_book(), [1_000 * n for n in range(1, 301)]))
    found = footprint(path)
    assert found.file_bytes == path.stat().st_size >= found.used_bytes + found.free_bytes
    accruals = found.table("accruals")
    assert accruals.rows == 300 and found.table("usage_events").rows == 300
    assert {c.column for c in accruals.columns} >= {"entry_hash", "amount", "event_id"}
    assert all(c.bytes > 0 and c.compression for c in accruals.columns)
    assert sum(t.bytes for t in found.tables) + found.other_bytes == found.used_bytes
    assert "api_tokens" not in {t.table for t in found.tables}  # no rows, not listed


def test_measuring_a_missing_file_names_it(tmp_path):
    with pytest.raises(LedgerFileError, match=r"no ledger file at .*nope\.duckdb to measure"):
        footprint(tmp_path / "nope.duckdb")
