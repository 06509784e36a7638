"""Entry digests computed from stored entries' Arrow columns equal ``chain.digest`` of their values.

From schema 14 no digest is stored beside an entry: a close and verify compute each covered
entry's digest from the columns DuckDB returns (natively when ``learnright_native`` is built,
in Python otherwise) and fold them into stream heads. Both must give ``chain``'s bytes for any
value an entry can hold, and the same heads as ``chain.fold_streams``.
"""

from datetime import datetime, timezone
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from ledger.core import chain
from ledger.errors import LedgerFileError
from ledger.storage import entry_digests
from ledger.storage.migrations import MIGRATIONS
from ledger.storage.store import Ledger

UTC = timezone.utc
FIELDS = ", ".join(chain.ENTRY_FIELDS)


def entry(n: int, **changes) -> dict:
    values = {
        "stream": "usage.training/3", "position": n, "line": 0, "platform_id": "p", "event_id": f"e{n}",
        "kind": "training", "source_id": "s", "holder_id": "h", "model_id": "m", "license_id": "l",
        "license_version": 2, "quantity": Decimal("1000000"), "unit": "tokens", "rate": Decimal("1.2"),
        "per": 1_000_000, "currency": "USD", "amount": Decimal("1.2"),
        "occurred_at": datetime(2026, 4, 2, 3, 4, 5, 678901, tzinfo=UTC), "period": "2026-04",
        "reverses_entry_key": None, "description": "",
    }
    return {**values, **changes}


VARIED = [
    entry(0),
    entry(1, platform_id='p"\\x\n\r\t\b\f\x00\x01\x0b\x1f\x7f', event_id="é☃\u2028\U0001f600", model_id=None),
    entry(2, reverses_entry_key="usage.training/3@0#0", description='how "it" was computed', amount=Decimal("-1.2"),
          quantity=Decimal("-1000000")),
    entry(3, amount=Decimal("0"), quantity=Decimal("0"), rate=Decimal("0"), description=None),
    entry(4, amount=Decimal("0.000000000001"), quantity=Decimal("0.0000012"), rate=Decimal("-0.000000999999")),
    entry(5, quantity=Decimal("99999999999999999999999999.999999999999"),
          amount=Decimal("-11111111021106000001.234567891234"), per=2**62, license_version=-2**31, line=2**31 - 1),
    entry(6, stream='clo"se/☃', position=2**62, occurred_at=datetime(1, 1, 1, tzinfo=UTC)),
    entry(7, occurred_at=datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), position=-1),
    entry(8, stream="close/2026-04", kind="minimum_guarantee", model_id="", description="top-up to the minimum"),
]


@pytest.fixture
def accruals():
    """A DuckDB table of the accruals' columns as the ledger declares them, in UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    ddl = MIGRATIONS[11].split("CREATE TABLE accruals_v11 (")[1].split(");")[0].replace("NOT NULL", "")
    con.execute(f"CREATE TABLE accruals ({ddl})")
    yield con
    con.close()


def insert(con, rows: list[dict]) -> None:
    for row in rows:
        con.execute(f"INSERT INTO accruals ({FIELDS}) VALUES ({', '.join('?' * len(chain.ENTRY_FIELDS))})",
                    [row[name] for name in chain.ENTRY_FIELDS])


def stored(con) -> tuple[pa.Table, list[tuple]]:
    """The entries as Arrow (what a close reads) and as Python values, in (stream, position, line) order."""
    sql = f"SELECT {FIELDS} FROM accruals ORDER BY stream, position, line"
    return con.execute(sql).to_arrow_table(), con.execute(sql).fetchall()


@pytest.fixture(params=["native", "python"])
def path(request, monkeypatch):
    """Each test runs with the native extension and with the Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(entry_digests, "_native", None)
    elif entry_digests._native is None:
        pytest.skip("learnright_native is not built")
    return request.param


def test_digests_of_varied_entries_are_chains(accruals, path):
    insert(accruals, VARIED)
    table, rows = stored(accruals)
    expected = [chain.digest(row) for row in rows]
    assert len(set(expected)) == len(VARIED)
    assert [d for batch in table.to_batches(max_chunksize=3) for d in entry_digests.entry_digests(batch)] == expected
    # What DuckDB gives back is what was put in: the digests are of the entries' own values.
    assert sorted(expected) == sorted(chain.digest([row[name] for name in chain.ENTRY_FIELDS]) for row in VARIED)


def test_sliced_and_large_string_columns_give_the_same_digests(accruals, path):
    insert(accruals, VARIED)
    table, rows = stored(accruals)
    expected = [chain.digest(row) for row in rows]
    batch = table.combine_chunks().to_batches()[0]
    assert entry_digests.entry_digests(batch.slice(2, 5)) == expected[2:7]  # Arrow offsets into shared buffers
    large = pa.RecordBatch.from_arrays(
        [column.cast(pa.large_string()) if pa.types.is_string(column.type) else column for column in batch.columns],
        names=batch.schema.names)
    assert entry_digests.entry_digests(large) == expected


def test_folding_stored_entries_gives_chains_heads(accruals, path):
    rows = [entry(n, stream=f"t/{n % 3}", line=n % 2) for n in range(50)] + VARIED
    insert(accruals, rows)
    table, values = stored(accruals)
    start = {"t/1": (7, "a" * 64), "gone/0": (1, "b" * 64)}
    expected = chain.fold_streams(((row[0], chain.digest(row)) for row in values), start)
    assert entry_digests.fold_entries(table.to_batches(max_chunksize=4), start) == expected
    assert expected["t/1"][0] == 7 + 17 and "gone/0" not in expected


def test_columns_in_another_order_or_of_another_type_are_refused(accruals, path):
    insert(accruals, VARIED[:2])
    table, _ = stored(accruals)
    with pytest.raises(LedgerFileError, match="not chain.ENTRY_FIELDS in order"):
        entry_digests.entry_digests(table.select(list(reversed(chain.ENTRY_FIELDS))).to_batches()[0])
    floats = table.set_column(table.schema.get_field_index("amount"), "amount", table.column("amount").cast(pa.float64()))
    with pytest.raises(LedgerFileError, match="accruals.amount came as Arrow double"):
        entry_digests.entry_digests(floats.to_batches()[0])


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
amounts = st.decimals(min_value=Decimal("-1e20"), max_value=Decimal("1e20"), places=12, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({
    "platform_id": texts, "event_id": texts, "model_id": st.none() | texts, "description": st.none() | texts,
    "reverses_entry_key": st.none() | texts, "amount": amounts, "quantity": amounts, "rate": amounts,
    "position": st.integers(-2**63, 2**63 - 1), "per": st.integers(-2**63, 2**63 - 1),
    "occurred_at": st.datetimes(timezones=st.just(UTC)),
}), min_size=1, max_size=6))
def test_native_digests_are_chains_for_any_entry(rows):
    if entry_digests._native is None:
        pytest.skip("learnright_native is not built")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        ddl = MIGRATIONS[11].split("CREATE TABLE accruals_v11 (")[1].split(");")[0].replace("NOT NULL", "")
        con.execute(f"CREATE TABLE accruals ({ddl})")
        insert(con, [entry(n, **row) for n, row in enumerate(rows)])
        table, values = stored(con)
    finally:
        con.close()
    assert [d for batch in table.to_batches() for d in entry_digests.entry_digests(batch)] == [
        chain.digest(row) for row in values]


# -- the auditors' view: the digest computed in SQL (migration 15) --------------------------------

ROW = ("entry_id, batch_id, platform_id, event_id, line, kind, source_id, holder_id, model_id, license_id,"
       " license_version, quantity, unit, rate, per, currency, amount, occurred_at, period, reverses_entry_id,"
       " entry_hash, description, stream, position, reverses_entry_key")


@pytest.fixture(scope="module")
def ledger_con(tmp_path_factory):
    """A connection to a ledger file at the latest schema (its accruals, the audit views and their
    macros), with a temporary table ``entries`` of the ENTRY_FIELDS columns' types, nullable."""
    path = tmp_path_factory.mktemp("sql-digests") / "ledger.duckdb"
    Ledger.open(path).close()
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TEMP TABLE entries AS SELECT {FIELDS} FROM accruals LIMIT 0")
    yield con
    con.close()


def book(con, rows: list[dict], stored: dict[int, str] | None = None) -> None:
    """Rows into the ledger's accruals as the writer stores them (entry_hash NULL unless given in ``stored``)."""
    stored = stored or {}
    for n, row in enumerate(rows, start=1):
        values = {**row, "entry_id": n, "batch_id": 1, "reverses_entry_id": None, "entry_hash": stored.get(n)}
        names = [name.strip() for name in ROW.split(",")]
        con.execute(f"INSERT INTO accruals ({ROW}) VALUES ({', '.join('?' * len(names))})", [values[k] for k in names])


def test_the_auditors_view_shows_each_entrys_digest_computed_in_sql(ledger_con):
    """Entries booked from schema 14 (no stored digest) show chain's digest; a stored hash shows as stored.

    Row 10 stands for an entry of format 2 (booked before schema 7: no stream), which keeps its chain link.
    """
    rows = [row if row["model_id"] is not None else {**row, "model_id": "m"} for row in VARIED]  # NOT NULL here
    legacy = {**entry(9), "stream": None, "position": None}
    con = ledger_con
    con.execute("BEGIN")
    try:
        book(con, rows + [legacy], stored={10: "f" * 64})
        con.execute("SET TimeZone = 'Pacific/Chatham'")  # what the auditor's session says changes nothing
        shown = con.execute("SELECT entry_id, entry_hash FROM audit_ledger ORDER BY entry_id").fetchall()
    finally:
        con.execute("ROLLBACK")
        con.execute("RESET TimeZone")
    assert shown == [(n, chain.digest([row[name] for name in chain.ENTRY_FIELDS])) for n, row in enumerate(rows, 1)
                     ] + [(10, "f" * 64)]


tricky_texts = st.text(st.sampled_from('"\\/\x7fé☃\u2028\U0001f600 a' + "".join(map(chr, range(0x20))))
                       | st.characters(blacklist_categories=("Cs",)), max_size=12)
scale12 = st.decimals(min_value=Decimal("-99999999999999999999999999.999999999999"),
                      max_value=Decimal("99999999999999999999999999.999999999999"), places=12, allow_nan=False)
tiny = st.decimals(min_value=Decimal("-0.00001"), max_value=Decimal("0.00001"), places=12, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({
    "stream": st.none() | tricky_texts, "platform_id": tricky_texts, "event_id": tricky_texts,
    "kind": tricky_texts, "model_id": st.none() | tricky_texts, "description": st.none() | tricky_texts,
    "reverses_entry_key": st.none() | tricky_texts, "amount": scale12 | tiny, "quantity": scale12 | tiny,
    "rate": scale12 | tiny, "position": st.none() | st.integers(-2**63, 2**63 - 1),
    "line": st.integers(-2**31, 2**31 - 1), "per": st.integers(-2**63, 2**63 - 1),
    "occurred_at": st.datetimes(timezones=st.just(UTC)),
}), min_size=1, max_size=6))
def test_the_sql_digest_is_chains_digest_for_any_entry(ledger_con, rows):
    """The ledger file's entry_digest macro, over any values its columns can hold (NULLs included)."""
    con = ledger_con
    values = [entry(n, **row) for n, row in enumerate(rows)]
    con.execute("BEGIN")
    try:
        for row in values:
            con.execute(f"INSERT INTO entries VALUES ({', '.join('?' * len(chain.ENTRY_FIELDS))})",
                        [row[name] for name in chain.ENTRY_FIELDS])
        computed = con.execute(f"SELECT entry_digest({FIELDS}) FROM entries ORDER BY rowid").fetchall()
    finally:
        con.execute("ROLLBACK")
    assert [digest for (digest,) in computed] == [chain.digest([row[name] for name in chain.ENTRY_FIELDS])
                                                  for row in values]


def test_entries_folded_as_stored_give_the_sorted_fold_and_a_stream_out_of_key_order_is_refused(accruals):
    """The close folds the covered rows in the order they are stored (each stream's keys rising,
    the streams interleaved) and sorts only when that order is not each stream's key order."""
    if entry_digests._native is None:
        pytest.skip("learnright_native is not built")
    start = {"t/1": (4, "ab" * 32)}
    rows = [entry(n, stream=f"t/{n % 3}", position=n // 2, line=n % 2) for n in range(60)]
    insert(accruals, rows)
    table, ordered = stored(accruals)
    expected = chain.fold_streams(((row[0], chain.digest(row)) for row in ordered), start)
    interleaved = accruals.execute(f"SELECT {FIELDS} FROM accruals ORDER BY position, line, stream").to_arrow_table()
    assert entry_digests.fold_entries_in_stored_order(interleaved.to_batches(max_chunksize=7), start) == expected
    # One stream's rows going back in key order (across a batch boundary too): refused, not folded wrongly.
    swapped = accruals.execute(f"SELECT {FIELDS} FROM accruals ORDER BY stream, position DESC, line").to_arrow_table()
    assert entry_digests.fold_entries_in_stored_order(swapped.to_batches(max_chunksize=7), start) is None
    repeated = pa.concat_tables([interleaved, interleaved.slice(0, 1)])
    assert entry_digests.fold_entries_in_stored_order(repeated.to_batches(), start) is None


def test_without_the_native_folder_the_stored_order_is_not_relied_on(accruals, monkeypatch):
    monkeypatch.setattr(entry_digests, "_native", None)
    insert(accruals, [entry(n) for n in range(3)])
    table, _ = stored(accruals)
    assert entry_digests.fold_entries_in_stored_order(table.to_batches(), {}) is None
