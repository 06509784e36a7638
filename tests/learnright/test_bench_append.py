"""DuckDB's append alone (`make bench`'s ceiling of ingest): it appends every booked row, batch by batch."""

import duckdb

from learnright.bench_append import append_booked, booked_batches
from learnright.bench_close import Size, build_ledger


def _rows(path, table):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT count(*), sum(hash(*COLUMNS(*))::HUGEINT) FROM {table}").fetchone()
    finally:
        con.close()


def test_the_append_copies_every_booked_row_in_the_batches_they_were_booked_in(tmp_path):
    booked = tmp_path / "booked.duckdb"
    build_ledger(booked, Size(holders=6, events=700), echo=lambda line: None)
    ddl, batches = booked_batches(booked)
    assert set(ddl) == {"usage_events", "accruals"}
    batch_ids = [{table["batch_id"].to_pylist()[0] for table in batch.values() if table.num_rows} for batch in batches]
    assert all(len(ids) == 1 for ids in batch_ids)  # a transaction per booked batch, both tables alike

    appended = append_booked(booked, tmp_path / "appended.duckdb", threads=1, memory_limit="64MB")

    assert appended.events == 700 and appended.batches == len(batches) >= 1
    assert appended.seconds > 0 and appended.cpu_seconds >= 0
    for table in ("usage_events", "accruals"):
        assert _rows(tmp_path / "appended.duckdb", table) == _rows(booked, table)
