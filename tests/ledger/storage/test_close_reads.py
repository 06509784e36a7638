"""What a close reads: the book parsed once per process, and statement lines streamed per statement.

The ledger is the close benchmark's synthetic month at a tiny size: 4 holders x 5 sources in
USD and EUR (8 statements), 300 events booked through pricing and ``append_batch``.
"""

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


def test_statement_line_groups_are_the_statement_lines_one_statement_at_a_time_in_key_order(tmp_path):
    path = tmp_path / "l.duckdb"
    build_ledger(path, Size(holders=4, events=300), echo=lambda line: None)
    with Ledger.open(path, read_only=True) as ledger:
        watermark = ledger.last_entry_id
        groups = list(ledger.statement_line_groups(PERIOD, watermark, 0))
        flat = ledger.statement_lines(PERIOD, watermark, 0)
    keys = [key for key, _ in groups]
    assert keys == sorted(set(keys)) and len(keys) == 8
    expected: dict[tuple[str, str], list] = {}
    for covered in flat:
        expected.setdefault((covered.holder_id, covered.currency), []).append(covered.line)
    assert {key: sorted(map(repr, lines)) for key, lines in groups} == \
        {key: sorted(map(repr, lines)) for key, lines in expected.items()}
