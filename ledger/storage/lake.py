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

import logging
import re
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

import duckdb

from ground.settings import LakeLocation, mask_secrets
from ledger.errors import DuplicateEventError, LedgerFileError, StaleBatchError
from ledger.storage import extensions
from ledger.storage.connection import Db, Reservation
from ledger.storage.migrations import FILE_ONLY, migrate
from ledger.storage.sql import SqlLimits, SqlRefusedError, spill_directory

if TYPE_CHECKING:  # loaded when a lake is opened: a ledger file's process does not need it (~15 MB)
    import psycopg

log = logging.getLogger(__name__)

CATALOG = "lake"
"""The name the ledger's lake is attached under in every connection."""

ACCESS = "lake_access"
"""The lake of the API tokens: its own metadata schema in the catalog and its own data path,
attached only by the ledger's own processes, never by an auditor's connection."""

ACCESS_SCHEMA = "learnright_access"
"""The PostgreSQL schema of the token lake's metadata and of the writers' counters."""

TOKEN_TABLES = ("api_tokens", "api_token_changes", "api_token_platforms")

AUDITOR_ROLE = "learnright_auditor"
"""The PostgreSQL role auditors' connections use: it reads the ledger lake's catalog only."""

SESSION = (f"USE {CATALOG}", f"SET search_path = '{CATALOG}.main,{ACCESS}.main'", "SET TimeZone = 'UTC'")
"""How every connection and cursor of a lake ledger is set up: unqualified names find the
ledger's tables in the lake, and the token tables in the token lake."""

LOCK_KEY = 0x4C52_4C4B  # "LRLK"
"""The PostgreSQL advisory lock key appends share and a close takes alone."""

_COUNTERS = ("entry", "batch", "quarantine")

_COUNTERS_DDL = f"""
CREATE TABLE IF NOT EXISTS {ACCESS_SCHEMA}.counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
"""


def lake_dialect(ddl: str) -> list[str]:
    """A migration's DDL as DuckLake takes it, as scripts each run in a transaction of its own.

    No primary keys or unique constraints: what they enforced on one file is enforced by the
    writers instead (events by :meth:`LakeTip.check_unique_events`, row numbers by the
    counters, closes by the lock). The token tables go to the token lake (:data:`ACCESS`),
    out of auditors' reach; a transaction writes one attached lake only, so their
    statements come first, on their own, and may run again (``IF NOT EXISTS``). A migration
    of files only (:data:`~ledger.storage.migrations.FILE_ONLY`) does nothing in a lake.
    """
    if ddl.startswith(FILE_ONLY):
        return ["SELECT 'a migration of ledger files only'"]
    ddl = re.sub(r",\s*PRIMARY KEY\s*\([^)]*\)", "", ddl)
    ddl = re.sub(r"\s+PRIMARY KEY\b", "", ddl)
    ddl = re.sub(r"\s+UNIQUE\b", "", ddl)
    tokens = re.compile(r"\b(?<!\.)(" + "|".join(TOKEN_TABLES) + r")\b")
    access, ledger = [], []
    for statement in (part.strip() for part in ddl.split(";")):
        if not statement:
            continue
        if tokens.search(statement) and not statement.upper().startswith(("CREATE VIEW", "CREATE OR REPLACE VIEW")):
            statement = tokens.sub(rf"{ACCESS}.main.\1", statement, count=1)
            statement = re.sub(r"^CREATE TABLE\b", "CREATE TABLE IF NOT EXISTS", statement)
            statement = re.sub(r"\bADD COLUMN\b", "ADD COLUMN IF NOT EXISTS", statement)
            access.append(statement + ";")
        else:
            ledger.append(statement + ";")
    return ["\n".join(access)] * bool(access) + ["\n".join(ledger)]


def access_data_path(location: LakeLocation) -> Path:
    """Where the token lake's files are: beside the ledger lake's data, never under it."""
    return location.data_path.with_name(location.data_path.name + "-access")


def _attach(con: duckdb.DuckDBPyConnection, url: str, name: str, data_path: Path, *options: str) -> None:
    extra = "".join(f", {option}" for option in options)
    try:
        con.execute(f"ATTACH '{_quoted(url)}' AS {name} (DATA_PATH '{_quoted(str(data_path))}'{extra})")
    except duckdb.Error as exc:
        con.close()
        raise LedgerFileError(f"cannot attach the lake {mask_secrets(url)} (data {data_path}):"
                              f" {mask_secrets(str(exc))}") from exc


def connect_lake(location: LakeLocation, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Opens the lake at ``location`` with its token lake (migrating them unless read-only), in UTC.

    Raises:
        LedgerFileError: the catalog cannot be reached or attached, or the extensions are missing.
        LedgerVersionError: the lake was written by a newer Learnright.
    """
    con = duckdb.connect(config=extensions.OFFLINE)
    extensions.load(con, "postgres_scanner", "ducklake")
    mode = ("READ_ONLY",) if read_only else ()
    _attach(con, location.url, CATALOG, location.data_path, *mode)
    _attach(con, location.url, ACCESS, access_data_path(location), f"METADATA_SCHEMA '{ACCESS_SCHEMA}'", *mode)
    for statement in SESSION:
        con.execute(statement)
    migrate(con, location, read_only, dialect=lake_dialect)
    return con


def auditor_location(location: LakeLocation, role: str = AUDITOR_ROLE) -> LakeLocation:
    """The lake as an auditor's connection reaches it: the same catalog, as the read-only role."""
    url = re.sub(r"\buser\s*=\s*\S+", "", location.url).rstrip()
    return LakeLocation(url=f"{url} user={role}", data_path=location.data_path)


def ensure_auditor_role(pg: psycopg.Connection, role: str = AUDITOR_ROLE) -> None:
    """Creates (once) the role auditors connect as: it reads the ledger lake's catalog and nothing else.

    It may read every table of the catalog's ``public`` schema, including the tables
    DuckLake creates later for inlined rows (default privileges), and nothing of the token
    lake's schema or the counters. Needs a writer allowed to create roles and grant.
    """
    exists = pg.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    if not exists:
        pg.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    database = pg.execute("SELECT current_database()").fetchone()[0]
    pg.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
    pg.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
    pg.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    pg.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{role}"')
    pg.execute(f'REVOKE ALL ON SCHEMA {ACCESS_SCHEMA} FROM PUBLIC')


def closed_periods(location: LakeLocation) -> list[str]:
    """The periods closed in the lake, as the auditor role reads them."""
    con = duckdb.connect(config=extensions.OFFLINE)
    try:
        extensions.load(con, "postgres_scanner", "ducklake")
        _attach(con, auditor_location(location).url, CATALOG, location.data_path, "READ_ONLY")
        return [period for (period,) in con.execute(f"SELECT period FROM {CATALOG}.period_closes ORDER BY period")
                .fetchall()]
    finally:
        con.close()


def lake_sandbox(location: LakeLocation, period: str, limits: SqlLimits) -> duckdb.DuckDBPyConnection:
    """An auditor's connection to the lake as the close of ``period`` committed it, sandboxed.

    It connects as the auditor role (:func:`ensure_auditor_role`), attaches only the
    ledger lake (never the token lake) read-only at the close's snapshot, may read no file
    but the lake's data, and has its configuration locked: DuckLake time travel gives
    every auditor the same answer for a close, whatever was booked after it.

    Raises:
        SqlRefusedError: ``period`` has no close, or the lake cannot be attached as the auditor.
    """
    auditor = auditor_location(location)
    con = duckdb.connect(config={
        **extensions.OFFLINE, "allow_community_extensions": False,
        "temp_directory": str(spill_directory(f"{location.url}#{period}", limits).resolve()),
        "max_temp_directory_size": limits.max_temp_bytes,
        "memory_limit": limits.memory_limit, "threads": limits.threads,
    })
    try:
        extensions.load(con, "postgres_scanner", "ducklake")
        _attach(con, auditor.url, "latest", location.data_path, "READ_ONLY")
        con.execute("USE latest")
        version = close_snapshot(con, period)
        con.execute("USE memory")
        con.execute("DETACH latest")
        _attach(con, auditor.url, CATALOG, location.data_path, "READ_ONLY", f"SNAPSHOT_VERSION {version}")
        con.execute(f"USE {CATALOG}")
        data = str(location.data_path.resolve()).rstrip("/") + "/"
        con.execute(f"SET allowed_directories = ['{_quoted(data)}']")
        con.execute("SET enable_external_access = false")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
    except (duckdb.Error, LedgerFileError) as exc:
        con.close()
        raise SqlRefusedError(f"cannot query the lake at the close of {period}: {mask_secrets(str(exc))}") from exc
    return con


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def current_snapshot(db: Db) -> int:
    """The id of the lake snapshot a connection reads now."""
    return db.value(f"SELECT id FROM ducklake_current_snapshot('{CATALOG}')")


def close_snapshot(con: duckdb.DuckDBPyConnection, period: str) -> int:
    """The lake snapshot that holds the close of ``period`` and nothing after it: the close's commit.

    The close records the snapshot it read (everything it covers); its commit is the first
    later snapshot that holds its row (the next one, unless a token or license change
    committed in between).

    Raises:
        LedgerFileError: ``period`` is not closed in this lake.
    """
    found = con.execute("SELECT lake_snapshot FROM period_closes WHERE period = ?", [period]).fetchall()
    if not found or found[0][0] is None:
        closed = [p for (p,) in con.execute("SELECT period FROM period_closes ORDER BY period").fetchall()]
        raise LedgerFileError(f"period {period!r} has no close in this lake (closed: {', '.join(closed) or 'none'})")
    read = found[0][0]
    last = con.execute("SELECT id FROM ducklake_current_snapshot(current_database())").fetchall()[0][0]
    for candidate in range(read + 1, last + 1):
        held = con.execute(f"SELECT count(*) FROM period_closes AT (VERSION => {candidate}) WHERE period = ?",
                           [period]).fetchall()[0][0]
        if held:
            return candidate
    raise LedgerFileError(f"the close of {period} read snapshot {read} but no later snapshot holds it")


def partition_lock(topic: str, partition: int) -> tuple[int, int]:
    """The advisory lock (two int4 keys) of one partition: its writer holds it from fence to commit."""
    return zlib.crc32(topic.encode()) - 2**31, partition


SETUP_KEY = LOCK_KEY + 1
"""The advisory lock writers hold while one of them migrates the lake and creates the counters."""


def catalog_session(location: LakeLocation) -> psycopg.Connection:
    """A PostgreSQL session to the lake's catalog database, for its locks and counters.

    Raises:
        LedgerFileError: the lake's catalog is not PostgreSQL, or cannot be reached.
    """
    import psycopg

    dsn = location.catalog_dsn
    if dsn is None:
        raise LedgerFileError(f"several writers need a PostgreSQL catalog (ducklake:postgres:...); {location} has"
                              " another")
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise LedgerFileError(f"cannot reach the lake's catalog {mask_secrets(dsn)}: {exc}") from exc


def open_lake(location: LakeLocation, read_only: bool) -> tuple[duckdb.DuckDBPyConnection, "LakeTip"]:
    """Opens the lake for reading, or for writing among other writers: its connection and its tip.

    A writer migrates the lake, creates the counters and the auditor role while it holds the
    setup lock, so writers starting together never race on the schema.
    """
    import psycopg

    if read_only:
        con = connect_lake(location, read_only=True)
        return con, LakeTip(Db(con, location), location, pg=None)
    pg = catalog_session(location)
    try:
        pg.execute("SELECT pg_advisory_lock(%s)", [SETUP_KEY])
        try:
            con = connect_lake(location, read_only=False)
            tip = LakeTip(Db(con, location), location, pg=pg)
            tip.seed()
            try:
                ensure_auditor_role(pg)
            except psycopg.Error as exc:  # a writer without CREATEROLE: auditors' --at-close is refused until granted
                log.warning("cannot create the auditor role %s in the lake's catalog: %s", AUDITOR_ROLE, exc)
        finally:
            pg.execute("SELECT pg_advisory_unlock(%s)", [SETUP_KEY])
    except BaseException:
        pg.close()
        raise
    return con, tip


class LakeTip:
    """Row numbering and coordination of one writer among several (see the module's guarantees).

    Holds one PostgreSQL session to the catalog's database for the counters and the lock.
    """

    gap_free = False

    def __init__(self, db: Db, location: LakeLocation, pg: psycopg.Connection | None):
        self.location = location
        self._pg = pg
        self._db = db

    def seed(self) -> None:
        """Creates the counters once, starting at what the lake already holds (under the setup lock)."""
        maxes = {
            "entry": self._db.value("SELECT coalesce(max(entry_id), 0) FROM accruals"),
            "batch": self._db.value("SELECT coalesce(max(batch_id), 0) FROM ingest_batches"),
            "quarantine": self._db.value("SELECT coalesce(max(quarantine_id), 0) FROM quarantine"),
        }
        pg = self._writer()
        pg.execute(_COUNTERS_DDL)
        for name, value in maxes.items():
            pg.execute(f"INSERT INTO {ACCESS_SCHEMA}.counters VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                       [name, value])

    def _writer(self) -> psycopg.Connection:
        if self._pg is None:
            raise LedgerFileError(f"the lake {self.location} is open read-only here")
        return self._pg

    def for_reader(self, db: Db) -> "LakeTip":
        """The tip a read view on ``db`` keeps: it reads, never numbers or locks."""
        return LakeTip(db, self.location, pg=None)

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
            f"UPDATE {ACCESS_SCHEMA}.counters SET value = value + CASE name"
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

    def check_unique_events(self, db: Db, batch_id: int, *, probed: bool = False) -> None:
        """Refuses a batch that books an event the lake holds already (inside its transaction).

        A batch whose every event was ``probed`` against the lake before it was built (the
        reference path) is not checked again: the probe found the events booked already.

        Raises:
            DuplicateEventError: the batch would book an event a second time; it is rolled back.
        """
        if probed:
            return
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

    def snapshot(self, db: Db) -> int:
        """The lake snapshot reads see now: under the close's lock, the one the whole close read."""
        return current_snapshot(db)

    def recorded_anchor(self) -> None:
        """None: a lake keeps no file beside it; its stream heads and closes record its end."""
        return None

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None
