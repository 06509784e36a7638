"""The DuckDB file under the repositories: opening it, transactions, columnar inserts, the chain's tip.

Guarantees:
  * One writer: DuckDB's file lock refuses a second writing process; the error says so.
  * Every open runs the migrations the file lacks (:mod:`ledger.storage.migrations`).
  * The anchor file beside the ledger is replaced whole (written aside, then renamed), so
    it always names the last row the ledger committed: a truncated ledger is found.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import duckdb
import pyarrow as pa

from ground.settings import default_admin_socket
from ledger.core import chain
from ledger.core.records import ChainAnchor
from ledger.errors import LedgerFileError, LedgerLockedError
from ledger.storage.event_filter import EventFilter
from ledger.storage.migrations import migrate


_HELD_BY = re.compile(r"lock is held in (.+?) \(PID (\d+)\)")

STORAGE_VERSION = "v1.5.0"
"""DuckDB storage format a new ledger file is written in (``storage_compatibility_version``; kept by the
file ever after). DuckDB writes new files in its oldest readable format (v1.0.0) by default; in this
one it appends the ledger's rows with about a fifth less CPU for the same bytes per event
(docs/benchmarks.md, "The ledger file's storage version"). A file written so opens in DuckDB 1.5 or
later only; one written before keeps its format."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Opens (creating, unless read-only) and migrates the ledger file at ``path``, in UTC.

    Raises:
        LedgerLockedError: another process holds the file as writer.
        LedgerFileError: the file is missing (read-only) or cannot be opened.
        LedgerVersionError: the file was written by a newer Learnright.
    """
    if read_only and not path.exists():
        raise LedgerFileError(f"ledger file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    created = {} if path.exists() else {"storage_compatibility_version": STORAGE_VERSION}
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=created)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise LedgerLockedError(locked_message(path, str(exc))) from exc
        raise LedgerFileError(f"cannot open ledger file {path}: {exc}") from exc
    con.execute("SET TimeZone = 'UTC'")
    try:
        migrate(con, path, read_only)
    except BaseException:
        con.close()  # a refused or failed migration leaves the file free for the next open
        raise
    return con


def locked_message(path: Path, duckdb_says: str) -> str:
    """What to do about a ledger file another process holds, naming that process when DuckDB does.

    The CLI reaches here only when no service answered on the admin socket; the default
    socket is named (``admin.socket`` may move it, and that setting is the shells' to know).
    """
    holder = _HELD_BY.search(duckdb_says)
    by = f" ({holder.group(1)}, PID {holder.group(2)})" if holder else ""
    return (f"ledger file {path} is held by another process{by}, its single writer: stop `learnright serve`, or run"
            f" this command while it runs so it goes through its admin socket {default_admin_socket(path)}"
            f" (or LEARNRIGHT_ADMIN__SOCKET); DuckDB said: {duckdb_says}")


class Db:
    """The connection (or, for a reader, the cursor) every repository of one ledger shares.

    Repositories reach the connection through ``con`` at each call, never keep it, so
    swapping it (a test injecting a crash) reaches all of them.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: object, session: tuple[str, ...] = ()):
        self.con = con
        self.path = path
        self.session = session
        """Statements that set up a connection of this ledger (a lake's ``USE``); replayed on each cursor."""

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of the connection for another thread or a streamed read, set up as the connection is."""
        cursor = self.con.cursor()
        for statement in self.session:
            cursor.execute(statement)
        return cursor

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    def value(self, sql: str, params: Sequence[object] = ()) -> object:
        """The single value of a query that returns one row of one column."""
        return self.con.execute(sql, list(params)).fetchall()[0][0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commits what the block wrote, or rolls all of it back on any error."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def insert(self, table: str, data: pa.Table) -> None:
        """Appends an Arrow table to ``table`` by column name (inside the caller's transaction).

        DuckDB reads ``data`` through a one-pass reader of its batches: a view registered and
        unregistered inside a transaction stays in the transaction's catalog until the
        transaction ends, holding the object it was registered with, so registering the
        table itself kept every insert's Arrow buffers alive until COMMIT (a close streaming
        100,000 statements into one transaction held every chunk's documents twice, in
        DuckDB and in Arrow). The reader lets go of each batch once DuckDB has read it.
        """
        self.con.register("_batch", pa.RecordBatchReader.from_batches(data.schema, iter(data.to_batches())))
        try:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _batch")
        except duckdb.Error:
            self._unregister_quietly()
            raise
        self.con.unregister("_batch")

    def _unregister_quietly(self) -> None:
        """Drops the batch view after a failed insert; an aborted transaction refuses that, and its rollback drops it."""
        try:
            self.con.unregister("_batch")
        except duckdb.Error:
            pass

    def rows_for_keys(self, keys: Sequence[tuple[str, str]], sql: str) -> list[tuple]:
        """Runs ``sql`` with the (platform_id, event_id) ``keys`` as the table ``_probe_keys``."""
        if not keys:
            return []
        probe = pa.table({"platform_id": [k[0] for k in keys], "event_id": [k[1] for k in keys]})
        self.con.register("_probe_keys", probe)
        try:
            return self.con.execute(sql).fetchall()
        finally:
            self.con.unregister("_probe_keys")


@dataclass(frozen=True)
class Reservation:
    """Numbers taken for one append: its batch id, its entries' and its quarantined records' first row numbers."""

    batch_id: int
    first_entry: int
    entries: int
    first_quarantine: int
    quarantined: int

    @property
    def last_entry(self) -> int:
        return self.first_entry + self.entries - 1


class ChainTip:
    """Row numbering and coordination of a ledger file's one writer.

    Numbers are read from the file on open and advanced by the code that commits (ingest,
    close), so numbering the next rows never asks the file again; they are local to this
    file and gap-free. One writer holds the file, so :meth:`booking` and :meth:`closing`
    have nothing to exclude. The lake's tip (:class:`ledger.storage.lake.LakeTip`) has the
    same interface and coordinates several writers.
    """

    gap_free = True
    """Row numbers have no gaps (a lake's may: a writer's aborted commit leaves its numbers unused)."""

    def __init__(self, db: Db):
        self.last_entry: int = db.value("SELECT coalesce(max(entry_id), 0) FROM accruals")
        self.last_batch: int = db.value("SELECT coalesce(max(batch_id), 0) FROM ingest_batches")
        self.last_quarantine: int = db.value("SELECT coalesce(max(quarantine_id), 0) FROM quarantine")
        self.path = db.path
        self.events = EventFilter()
        """The booked events' hashes, loaded at the first check (a reader never checks)."""

    def for_reader(self, db: Db) -> "ChainTip":
        """The tip a read view on ``db`` (another thread's cursor) keeps."""
        return ChainTip(db)

    @contextmanager
    def booking(self, partitions: Iterable[tuple[str, int]] = ()) -> Iterator[None]:
        """Around numbering and committing an append: nothing to exclude with one writer."""
        yield

    def check_fence(self, db: Db, starts: Mapping[tuple[str, int], int]) -> None:
        """Nothing to check: the one writer's consumer seeks to the file's offsets itself."""

    @contextmanager
    def closing(self) -> Iterator[None]:
        """Around a whole close: nothing to exclude with one writer."""
        yield

    def reserve(self, *, entries: int, quarantined: int = 0) -> Reservation:
        """The numbers the next append gets; taken for good only by :meth:`advance` after its commit."""
        self.events.forget_staged()  # a batch checked but rolled back under the same batch id
        return Reservation(batch_id=self.last_batch + 1, first_entry=self.last_entry + 1, entries=entries,
                           first_quarantine=self.last_quarantine + 1, quarantined=quarantined)

    def next_entry(self, entries: int) -> int:
        """The first row number ``entries`` planned entries get if appended next (nothing is taken)."""
        return self.last_entry + 1

    def check_planned(self, first_entry: int) -> None:
        """Refuses planned entries numbered before another append took their rows."""
        if first_entry != self.last_entry + 1:
            raise LedgerFileError(f"planned entries start at {first_entry} but the ledger ends at {self.last_entry}")

    def check_unique_events(self, db: Db, batch_id: int, *, probed: bool = False) -> None:
        """Refuses a batch (inserted, inside its transaction) that books an event the file holds or books one twice.

        The file has no key on ``usage_events`` since schema 12: the one writer's filter
        (:class:`ledger.storage.event_filter.EventFilter`) checks every batch, ``probed`` or not.

        Raises:
            DuplicateEventError: the batch would book an event a second time; it is rolled back.
        """
        self.events.check(db, batch_id)

    def committed_through(self, db: Db) -> int:
        """The last row number committed (what a close covers up to)."""
        return self.last_entry

    def advance(self, reservation: Reservation) -> None:
        """Moves the tip past a committed append; rewrites the anchor file when entries were added."""
        self.last_batch = reservation.batch_id
        self.last_quarantine += reservation.quarantined
        self.events.committed(reservation.batch_id)
        if reservation.entries:
            self.last_entry = reservation.last_entry
            write_anchor(self.path, self.last_entry)

    def snapshot(self, db: Db) -> int | None:
        """The storage's snapshot id that reads see now: none for a file."""
        return None

    def recorded_anchor(self) -> ChainAnchor | None:
        """What the anchor file beside the ledger records of its end, if there is one."""
        return read_anchor(self.path)

    def close(self) -> None:
        """Nothing held outside the file."""


def anchor_path(db: Path) -> Path:
    """The anchor file beside a ledger: its last row number, outside the DuckDB file."""
    return db.with_name(db.name + ".anchor")


def write_anchor(db: Path, last_entry_id: int) -> None:
    target = anchor_path(db)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps({"format": chain.ENTRY_FORMAT, "last_entry_id": last_entry_id}))
    temporary.replace(target)


def read_anchor(db: Path) -> ChainAnchor | None:
    """What the anchor file beside ``db`` records; None when there is none.

    An anchor written before entry format 3 also names the format-2 chain head there.
    """
    anchor = anchor_path(db)
    if not anchor.exists():
        return None
    recorded = json.loads(anchor.read_text())
    return ChainAnchor(where=f"anchor file {anchor.name}", last_entry_id=recorded["last_entry_id"],
                       chain_head=recorded.get("chain_head", ""))
