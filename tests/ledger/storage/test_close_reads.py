"""What a close reads: the book parsed once per process, and statement lines streamed per statement.

The ledger is the close benchmark's synthetic month at a tiny size: 4 holders x 5 sources in
USD and EUR (8 statements), 300 events booked through pricing and ``append_batch``.
"""

from decimal import Decimal

import pyarrow as pa
from hypothesis import given, strategies as st

from ledger.storage.line_ranges import python_values
from ledger.storage.store import Ledger
from learnright.bench_close import PERIOD, Size, build_ledger


def test_a_second_ledger_on_the_same_documents_gets_the_book_this_process_parsed(tmp_path):
    path = tmp_path / "l.duckdb"
    build_ledger(path, Size(holders=4, events=300), echo=lambda line: None)
    with Ledger.open(path) as first:
        book = first.load_book()
    with Ledger.open(path) as second:
        assert second.load_book() is book
        second.apply_licenses('format = 1\n[[holders]]\nid = "h-new"\nname = "New"\n', "new.toml")
        again = second.load_book()
    assert again is not book and "h-new" in again.holders and set(book.holders) < set(again.holders)


def test_statement_line_groups_are_the_covered_accruals_one_statement_at_a_time_in_key_order(tmp_path):
    path = tmp_path / "l.duckdb"
    build_ledger(path, Size(holders=4, events=300), echo=lambda line: None)
    with Ledger.open(path, read_only=True) as ledger:
        watermark = ledger.last_entry_id
        groups = list(ledger.statement_line_groups(PERIOD, watermark, 0))
        covered = {(holder, currency): (entries, amount) for holder, currency, entries, amount in ledger.con.execute(
            "SELECT holder_id, currency, count(*), sum(amount) FROM accruals WHERE period = ? GROUP BY ALL",
            [PERIOD]).fetchall()}
    keys = [key for key, _ in groups]
    assert keys == sorted(set(keys)) and len(keys) == 8 and set(keys) == set(covered)
    for key, lines in groups:
        identities = [(line.period, line.source_id, line.platform_id, line.model_id, line.kind, line.unit, line.rate,
                       line.per, line.license_id, line.license_version, line.description) for line in lines]
        assert len(identities) == len(set(identities)), f"{key}: a line appears twice"
        assert (sum(line.entries for line in lines), sum(line.amount for line in lines)) == covered[key]



@given(scale=st.integers(min_value=0, max_value=12),
       unscaled=st.lists(st.one_of(st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
                                   st.sampled_from([0, 1, -1, 10**12, -(10**12), 5 * 10**11])), max_size=50))
def test_decimals_are_read_as_arrow_reads_them_digit_for_digit(scale, unscaled):
    """The statement lines' decimals (rate, quantity and amount sums, DECIMAL(38,12)) as ``to_pylist`` gives them:
    the same value, digits and exponent, so every amount a statement shows is written the same."""
    column = pa.Array.from_buffers(pa.decimal128(38, scale), len(unscaled), [
        None, pa.py_buffer(b"".join(n.to_bytes(16, "little", signed=True) for n in unscaled))])
    assert [d.as_tuple() for d in python_values(column)] == [d.as_tuple() for d in column.to_pylist()]
    assert all(type(d) is Decimal for d in python_values(column))


def test_columns_other_than_decimals_or_with_nulls_are_read_by_arrow():
    for column in (pa.array(["a", None]), pa.array([1, 2]), pa.array([Decimal("1.5"), None], pa.decimal128(38, 12))):
        assert python_values(column) == column.to_pylist()
