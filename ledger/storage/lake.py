"""The lake edge: a ledger in DuckLake, its catalog in PostgreSQL, its data in Parquet, several writers.

The same repositories and SQL serve the file and the lake; what differs lives here:
opening (the extensions from their wheels, ``ATTACH 'ducklake:...'``), the schema's
dialect (DuckLake has no primary keys, unique constraints, indexes or sequences), and
the coordination of several writers, which one DuckDB file never needs.

Guarantees:
  * Row numbers (entries, batches, quarantined records) are unique across writers: each
    append takes its numbers from counters in the catalog's PostgreSQL database. They
    rise in commit order but may have gaps (an aborted commit's numbers stay unused).
  * A close excludes every append: appends hold a shared PostgreSQL advisory lock from
    taking their numbers until their commit ends, the close holds it exclusively from
    reading its watermark until its own commit, so every number at or below a close's
    watermark is committed (or abandoned) before the close reads, and every later append
    is numbered above it. The same close covers the same entries as on one file.
  * One close runs at a time in the cluster (the same exclusive lock).
  * An event is booked once: a batch that would book an event already in the lake is
    rolled back whole (the file's primary key does this for one writer); the partition
    rules of ``docs/scaling.md`` keep every event and its corrections with one writer.
"""

from __future__ import annotations

import re
import zlib
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping

import duckdb
import psycopg

from ground.settings import LakeLocation, mask_secrets
from ledger.errors import DuplicateEventError, LedgerFileError, StaleBatchError
from ledger.storage import extensions
from ledger.storage.connection import Db, Reservation
from ledger.storage.migrations import migrate

CATALOG = "lake"
"""The name the lake is attached under in every connection."""

SESSION = (f"USE {CATALOG}", "SET TimeZone = 'UTC'")
"""How every connection and cursor of a lake ledger is set up."""

LOCK_KEY = 0x4C52_4C4B  # "LRLK"
"""The PostgreSQL advisory lock key appends share and a close takes alone."""

_COUNTERS = ("entry", "batch", "quarantine")

_COUNTERS_DDL = """
CREATE TABLE IF NOT EXISTS learnright_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
"""


def lake_dialect(ddl: str) -> str:
    """A migration's DDL as DuckLake takes it: without primary keys and unique constraints.

    What they enforced on one file is enforced by the writers instead: events by
    :meth:`LakeTip.check_unique_events`, row numbers by the counters, closes by the lock.
    """
    ddl = re.sub(r",\s*PRIMARY KEY\s*\([^)]*\)", "", ddl)
    ddl = re.sub(r"\s+PRIMARY KEY\b", "", ddl)
    return re.sub(r"\s+UNIQUE\b", "", ddl)


def connect_lake(location: LakeLocation, read_only: bool, snapshot: int | None = None) -> duckdb.DuckDBPyConnection:
    """Opens the lake at ``location`` (migrating it unless read-only), in UTC; ``snapshot`` pins a read to it.

    Raises:
        LedgerFileError: the catalog cannot be reached or attached, or the extensions are missing.
        LedgerVersionError: the lake was written by a newer Learnright.
    """
    con = duckdb.connect(config=extensions.OFFLINE)
    extensions.load(con, "postgres_scanner", "ducklake")
    options = [f"DATA_PATH '{_quoted(str(location.data_path))}'"]
    if read_only:
        options.append("READ_ONLY")
    if snapshot is not None:
        options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
    try:
        con.execute(f"ATTACH '{_quoted(location.url)}' AS {CATALOG} ({', '.join(options)})")
    except duckdb.Error as exc:
        con.close()
        raise LedgerFileError(f"cannot attach the lake {location}: {mask_secrets(str(exc))}") from exc
    for statement in SESSION:
        con.execute(statement)
    migrate(con, location, read_only, dialect=lake_dialect)
    return con


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def current_snapshot(db: Db) -> int:
    """The id of the lake snapshot a connection reads now."""
    return db.value(f"SELECT id FROM ducklake_current_snapshot('{CATALOG}')")


def partition_lock(topic: str, partition: int) -> tuple[int, int]:
    """The advisory lock (two int4 keys) of one partition: its writer holds it from fence to commit."""
    return zlib.crc32(topic.encode()) - 2**31, partition


class LakeTip:
    """Row numbering and coordination of one writer among several (see the module's guarantees).

    Holds one PostgreSQL session to the catalog's database for the counters and the lock.
    """

    gap_free = False

    def __init__(self, db: Db, location: LakeLocation, read_only: bool):
        self.location = location
        self._pg: psycopg.Connection | None = None
        self._db = db
        if not read_only:
            self._pg = self._session()
            self._seed()

    def _session(self) -> psycopg.Connection:
        dsn = self.location.catalog_dsn
        if dsn is None:
            raise LedgerFileError(f"several writers need a PostgreSQL catalog (ducklake:postgres:...); {self.location}"
                                  " has another")
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerFileError(f"cannot reach the lake's catalog {mask_secrets(dsn)}: {exc}") from exc

    def _seed(self) -> None:
        """Creates the counters once, starting at what the lake already holds."""
        maxes = {
            "entry": self._db.value("SELECT coalesce(max(entry_id), 0) FROM accruals"),
            "batch": self._db.value("SELECT coalesce(max(batch_id), 0) FROM ingest_batches"),
            "quarantine": self._db.value("SELECT coalesce(max(quarantine_id), 0) FROM quarantine"),
        }
        pg = self._writer()
        pg.execute(_COUNTERS_DDL)
        for name, value in maxes.items():
            pg.execute("INSERT INTO learnright_counters VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", [name, value])

    def _writer(self) -> psycopg.Connection:
        if self._pg is None:
            raise LedgerFileError(f"the lake {self.location} is open read-only here")
        return self._pg

    def for_reader(self, db: Db) -> "LakeTip":
        """The tip a read view on ``db`` keeps: it reads, never numbers or locks."""
        return LakeTip(db, self.location, read_only=True)

    @contextmanager
    def booking(self, partitions: Iterable[tuple[str, int]] = ()) -> Iterator[None]:
        """Holds the shared lock around taking numbers and committing them (a close waits for it),
        and each of ``partitions``' own lock, so the fence checked inside stays true until the commit."""
        pg = self._writer()
        keys = sorted({partition_lock(topic, partition) for topic, partition in partitions})  # one order: no deadlock
        pg.execute("SELECT pg_advisory_lock_shared(%s)", [LOCK_KEY])
        try:
            for key in keys:
                pg.execute("SELECT pg_advisory_lock(%s, %s)", key)
            try:
                yield
            finally:
                for key in reversed(keys):
                    pg.execute("SELECT pg_advisory_unlock(%s, %s)", key)
        finally:
            pg.execute("SELECT pg_advisory_unlock_shared(%s)", [LOCK_KEY])

    def check_fence(self, db: Db, starts: Mapping[tuple[str, int], int]) -> None:
        """Refuses a batch that starts before what the lake has booked of one of its partitions.

        Runs first in the batch's transaction, under the partitions' locks (:meth:`booking`),
        so the offsets read are the latest committed and stay so until this batch commits.
        A writer that lost a partition in a rebalance but still holds records it read
        (a zombie) is refused here instead of booking them a second time.

        Raises:
            StaleBatchError: the lake holds a later offset for one of the batch's partitions.
        """
        if not starts:
            return
        stored = dict(((topic, partition), offset) for topic, partition, offset in db.rows(
            "SELECT topic, kafka_partition, max(next_offset) FROM consumer_offsets"
            " WHERE topic IN (SELECT unnest(?)) GROUP BY ALL", [sorted({topic for topic, _ in starts})]))
        behind = sorted((tp, start, stored[tp]) for tp, start in starts.items() if stored.get(tp, 0) > start)
        if behind:
            (topic, partition), start, booked = behind[0]
            raise StaleBatchError(
                f"{topic}/{partition}: this batch starts at offset {start} but the lake has booked up to {booked}"
                f" (another writer took the partition in a rebalance); {len(behind)} partition(s) behind,"
                " nothing appended, reading again from the lake's offsets")

    @contextmanager
    def closing(self) -> Iterator[None]:
        """Holds the lock alone for a whole close: no append commits and no other close runs meanwhile."""
        pg = self._writer()
        pg.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            yield
        finally:
            pg.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])

    def _take(self, **counts: int) -> dict[str, int]:
        """Adds ``counts`` to the counters at once; returns each one's first number taken."""
        rows = self._writer().execute(
            "UPDATE learnright_counters SET value = value + CASE name"
            " WHEN 'entry' THEN %(entry)s WHEN 'batch' THEN %(batch)s WHEN 'quarantine' THEN %(quarantine)s END"
            " WHERE name IN ('entry', 'batch', 'quarantine') RETURNING name, value",
            {name: counts.get(name, 0) for name in _COUNTERS}).fetchall()
        after = dict(rows)
        return {name: after[name] - counts.get(name, 0) + 1 for name in _COUNTERS}

    def reserve(self, *, entries: int, quarantined: int = 0) -> Reservation:
        first = self._take(entry=entries, batch=1, quarantine=quarantined)
        return Reservation(batch_id=first["batch"], first_entry=first["entry"], entries=entries,
                           first_quarantine=first["quarantine"], quarantined=quarantined)

    def next_entry(self, entries: int) -> int:
        """Takes the row numbers of a close's planned entries now (the close holds the lock alone)."""
        return self._take(entry=entries)["entry"]

    def check_planned(self, first_entry: int) -> None:
        """Nothing to check: :meth:`next_entry` took the planned numbers for good."""

    def check_unique_events(self, db: Db, batch_id: int) -> None:
        """Refuses a batch that books an event the lake holds already (inside its transaction).

        Raises:
            DuplicateEventError: the batch would book an event a second time; it is rolled back.
        """
        found = db.rows(
            "SELECT platform_id, event_id FROM usage_events WHERE (platform_id, event_id) IN"
            " (SELECT platform_id, event_id FROM usage_events WHERE batch_id = ?)"
            " GROUP BY ALL HAVING count(*) > 1 LIMIT 3", [batch_id])
        if found:
            raise DuplicateEventError(f"batch {batch_id} would book events the lake holds already: {found}")

    def committed_through(self, db: Db) -> int:
        """The last row number committed, as this connection's snapshot shows it."""
        return db.value("SELECT coalesce(max(entry_id), 0) FROM accruals")

    def advance(self, reservation: Reservation) -> None:
        """Nothing to move: the numbers were taken in the catalog."""

    def recorded_anchor(self) -> None:
        """None: a lake keeps no file beside it; its stream heads and closes record its end."""
        return None

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None
