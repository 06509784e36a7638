"""The lake edge on a real PostgreSQL catalog: numbering, the fence, the close's lock, the dialect.

The byte-for-byte comparisons with the single file (one and two writers over the same log)
are in tests/consumers/test_reproducible.py; these pin the coordination they rest on.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from ledger.core.records import IngestBatch
from ledger.errors import StaleBatchError
from ledger.storage.lake import LOCK_KEY, lake_dialect
from ledger.storage.store import Ledger


def test_the_lake_dialect_drops_keys_and_unique_constraints_and_keeps_the_rest():
    ddl = """CREATE TABLE t (
        a INTEGER PRIMARY KEY,
        b VARCHAR NOT NULL UNIQUE,
        c DECIMAL(38, 12) NOT NULL,
        PRIMARY KEY (a, b)
    );"""
    assert lake_dialect(ddl) == """CREATE TABLE t (
        a INTEGER,
        b VARCHAR NOT NULL,
        c DECIMAL(38, 12) NOT NULL
    );"""


def offsets_batch(start: int, end: int) -> IngestBatch:
    return IngestBatch(offsets={("t", 0): end}, starts={("t", 0): start})


@pytest.mark.postgres
def test_writers_number_batches_apart_and_a_batch_behind_the_lake_is_refused_whole(lake_location):
    with Ledger.open(lake_location) as first, Ledger.open(lake_location) as second:
        a = first.append_batch(offsets_batch(0, 5))
        b = second.append_batch(offsets_batch(5, 9))
        assert (a.batch_id, b.batch_id) == (1, 2)
        with pytest.raises(StaleBatchError, match=r"t/0: this batch starts at offset 3 but the lake has booked up to 9"):
            first.append_batch(offsets_batch(3, 12))  # a zombie: it read 3.. before the partition moved on
        assert first.stored_offsets() == {("t", 0): 9}
        assert first.scalar("SELECT count(*) FROM ingest_batches") == 2


@pytest.mark.postgres
def test_an_append_waits_for_a_close_and_is_numbered_after_it(lake_location, postgres_dsn):
    """Deterministic: the append is seen waiting on the lock in pg_locks before the close ends."""
    with Ledger.open(lake_location) as closer, Ledger.open(lake_location) as writer:
        closer.append_batch(offsets_batch(0, 1))
        done: list[object] = []
        with closer.closing():
            watermark_batch = closer.scalar("SELECT max(batch_id) FROM ingest_batches")
            thread = threading.Thread(target=lambda: done.append(writer.append_batch(offsets_batch(1, 2))))
            thread.start()
            catalog = lake_location.catalog_dsn
            with psycopg.connect(catalog, autocommit=True) as pg:
                while not pg.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                     " AND objid = %s", [LOCK_KEY & 0xFFFFFFFF]).fetchone()[0]:
                    thread.join(0.05)
                    assert thread.is_alive(), "the append finished while the close held the lock"
            assert done == []
        thread.join()
        assert done[0].batch_id > watermark_batch
