"""The connection's columnar insert: by column name, inside the caller's transaction, holding nothing after it."""

import duckdb
import pyarrow as pa
import pytest

from ledger.storage.connection import Db


@pytest.fixture
def db(tmp_path):
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    con.execute("CREATE TABLE docs (doc_id VARCHAR PRIMARY KEY, n INTEGER NOT NULL, note VARCHAR, document JSON NOT NULL)")
    yield Db(con, tmp_path / "t.duckdb")
    con.close()


def _chunk(start: int, pool: pa.MemoryPool | None = None) -> pa.Table:
    """100 rows of about 4 KB documents, columns in another order than the table's and ``note`` left out;
    its buffers allocated from ``pool`` (Arrow's default pool: None)."""
    return pa.table({
        "document": pa.array([f'{{"text": "{"x" * 4000}{i}"}}' for i in range(start, start + 100)], memory_pool=pool),
        "n": pa.array(range(start, start + 100), pa.int32(), memory_pool=pool),
        "doc_id": pa.array([f"d-{i}" for i in range(start, start + 100)], memory_pool=pool),
    })


def test_inserts_inside_a_transaction_let_go_of_their_arrow_tables_before_it_commits(db):
    # A close streams its statements into one transaction a chunk at a time: a chunk kept alive
    # until COMMIT (a registered view does that) made the close's memory grow with the month.
    # The chunks' own pool counts their bytes alone: the default pool's total also moves with whatever
    # another thread of the test process allocates meanwhile.
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    with db.transaction():
        for start in range(0, 1000, 100):
            db.insert("docs", _chunk(start, pool))
            assert pool.bytes_allocated() == 0
    assert db.rows("SELECT count(*), sum(n), count(note) FROM docs") == [(1000, sum(range(1000)), 0)]
    assert db.value("SELECT document FROM docs WHERE doc_id = 'd-7'") == f'{{"text": "{"x" * 4000}7"}}'


def test_a_failed_insert_rolls_back_every_chunk_of_its_transaction(db):
    with pytest.raises(duckdb.ConstraintException):
        with db.transaction():
            db.insert("docs", _chunk(0))
            db.insert("docs", _chunk(50))  # d-50 .. d-99 again
    assert db.value("SELECT count(*) FROM docs") == 0
    db.insert("docs", _chunk(0))  # the connection is usable after the rollback
    assert db.value("SELECT count(*) FROM docs") == 100


def test_an_empty_table_inserts_nothing(db):
    with db.transaction():
        db.insert("docs", _chunk(0).slice(0, 0))
    assert db.value("SELECT count(*) FROM docs") == 0
