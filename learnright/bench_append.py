"""DuckDB alone appending the rows the pipeline booked: the ceiling of ingest on this machine.

Ingest's writer thread appends each batch's ``usage_events`` and ``accruals`` rows in one
DuckDB transaction, and that append is most of its time (docs/benchmarks.md, the ingest
profile). This measures the append with nothing of ours around it: the rows of a ledger the
pipeline has just booked, read back as Arrow before the clock starts, appended into a fresh
file of the ledger's storage version with the same tables in the same transactions (one per booked batch, by ``batch_id``),
then checkpointed, on the consumer's DuckDB threads. No pipeline can book faster than DuckDB
appends its rows, so ingest's rate over this one is how much of the ceiling it reaches, and
this rate against issue 18's target says whether the target is reachable with these rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from learnright.bench_report import process_cpu_seconds
from ledger.storage.connection import STORAGE_VERSION

TABLES = ("usage_events", "accruals")
"""What a batch appends that grows with its events, in the order the writer appends them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Append:
    events: int
    batches: int
    seconds: float
    cpu_seconds: float
    """CPU time of this process (every thread) over the appends and the checkpoint."""



def booked_batches(booked: Path) -> tuple[dict[str, str], list[dict[str, pa.Table]]]:
    """The DDL of :data:`TABLES` in ``booked``, and its rows as Arrow tables, a dict of them per
    batch in booking order (events by topic, partition and offset, entries by entry id)."""
    con = duckdb.connect(str(booked), read_only=True)
    try:
        ddl = {name: con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()[0]
               for name in TABLES}
        tables = {
            "usage_events": con.execute(
                "SELECT * FROM usage_events ORDER BY batch_id, topic, kafka_partition, kafka_offset").to_arrow_table(),
            "accruals": con.execute("SELECT * FROM accruals ORDER BY entry_id").to_arrow_table(),
        }
        batch_ids = [row[0] for row in con.execute("SELECT DISTINCT batch_id FROM usage_events ORDER BY 1").fetchall()]
    finally:
        con.close()
    batches = [{name: table.filter(pc.equal(table["batch_id"], batch_id)).combine_chunks()
                for name, table in tables.items()} for batch_id in batch_ids]
    return ddl, batches


def append_booked(booked: Path, into: Path, *, threads: int, memory_limit: str) -> Append:
    """Appends the rows of ``booked`` (a ledger file, closed) into a new file ``into``, batch by batch
    as they were booked, and checkpoints; times the appends and the checkpoint only.

    ``threads`` and ``memory_limit`` are DuckDB's for the new file: the consumer's
    ``ledger_threads`` and ``checkpoint_memory_limit`` (DuckDB checkpoints on its own here, as
    its write-ahead log grows; the consumer's own checkpoint rule is the pipeline's).
    """
    ddl, batches = booked_batches(booked)
    con = duckdb.connect(str(into), config={"threads": threads, "memory_limit": memory_limit,
                                            "storage_compatibility_version": STORAGE_VERSION})
    try:
        for statement in ddl.values():
            con.execute(statement)
        started, cpu = time.perf_counter(), process_cpu_seconds()
        for batch in batches:
            con.execute("BEGIN")
            for name in TABLES:
                con.register("_batch", batch[name])
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _batch")
                con.unregister("_batch")
            con.execute("COMMIT")
        con.execute("CHECKPOINT")
        seconds, cpu = time.perf_counter() - started, process_cpu_seconds() - cpu
    finally:
        con.close()
    return Append(events=sum(batch["usage_events"].num_rows for batch in batches), batches=len(batches),
                  seconds=seconds, cpu_seconds=cpu)
