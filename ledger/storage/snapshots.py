"""Snapshots: read-only copies of the ledger that auditors open while ingestion goes on.

DuckDB lets no other process open a file its writer holds, so the serving process
publishes copies: at each close and on demand. A snapshot is a directory

    <snapshots_dir>/<snapshot_id>/ledger.duckdb      every table and the audit_* views (with their macros)
    <snapshots_dir>/<snapshot_id>/parquet/<name>.parquet   one file per table and view
    <snapshots_dir>/<snapshot_id>/manifest.json      format, time, last row and its hash, last close, row counts

Guarantees:
  * Consistent: copied in one DuckDB transaction, so it is the ledger as of one commit
    (its manifest names the last row and its hash, ``chain_head``, at that commit: the
    row's digest computed from its fields, or its stored format-2 hash).
  * Published whole or not at all: written under a temporary name and renamed; the
    ``LATEST`` file names the newest one only after it is complete.
  * Immutable: files are made read-only and never rewritten.
  * Holds no API tokens (not even their hashes, not even in freed blocks): the snapshot
    file is built table by table from an explicit allow-list (:data:`TABLES`), so token
    rows are never written to it. A table a later migration adds stays out until it is
    added to the list.
  * Auditors query only snapshots: :func:`snapshot_for_query` gives the ``sql`` command the
    latest snapshot while it holds all the ledger holds, and publishes a new one otherwise
    (from a ledger opened read-only); :func:`snapshot_after_close` gives the service one
    that covers its latest close.
  * Names the last close it covers (``last_close``: period, root, time), so every answer
    from it can say how far it goes.
  * Bounded: each publish prunes to the newest ``keep_last`` plus the first snapshot that
    covers each close (:func:`retained`). It never deletes the one ``LATEST`` names nor one
    a reader holds (:func:`holding`, a shared ``flock`` on its manifest, across processes).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from ground.errors import Terminal
from ground.settings import SnapshotSettings
from ledger.errors import LedgerError, LedgerLockedError
from ledger.storage.entry_digests import LAST_ENTRY_SQL, last_entry as last_entry_of
from ledger.storage.store import Ledger

FORMAT = 1
DATABASE = "ledger.duckdb"
MANIFEST = "manifest.json"
EXCLUDED = ("api_tokens", "api_token_changes", "api_token_platforms")
TABLES = ("accruals", "close_cutoffs", "close_streams", "consumer_offsets", "ingest_batches", "license_documents",
          "license_versions", "model_lineage", "period_closes", "quarantine", "revenue_reports", "revenue_settlements",
          "schema_migrations", "statement_publications", "statements", "unlicensed_use", "usage_events",
          # collectives (migration 9)
          "collective_members", "distribution_rules", "collective_distributions", "member_statements",
          # the parsed form of each license document (migration 13)
          "license_document_forms")
"""The tables a snapshot holds; never a token table (:data:`EXCLUDED`)."""
KEEP_LAST = SnapshotSettings.model_fields["keep_last"].default
"""Snapshots a publish keeps when its caller names no ``keep_last`` (``snapshots.keep_last``'s default)."""
HOLD_ATTEMPTS = 5
"""Times :func:`holding` picks again when the snapshot it picked was pruned before it could hold it."""
_publishing = threading.RLock()
log = logging.getLogger(__name__)


class SnapshotError(Terminal, LedgerError):
    """A snapshot could not be published or read; the message names the path."""

    code = "snapshot_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseMark:
    """The last close a snapshot covers: its period, its close root and when it was made.

    ``root`` is None for a close stored before ledger schema 7 (it has no root).
    ``closed_at`` is UTC, so two marks of one close are equal.
    """

    period: str
    root: str | None
    closed_at: datetime

    @classmethod
    def of(cls, close) -> "CloseMark | None":
        """The mark of a :class:`~ledger.core.records.CloseRecord` (None for None)."""
        if close is None:
            return None
        return cls(period=close.period, root=close.root, closed_at=close.closed_at.astimezone(timezone.utc))

    def to_json(self) -> dict:
        return {"period": self.period, "root": self.root, "closed_at": self.closed_at.isoformat()}

    @classmethod
    def from_json(cls, value: dict | None) -> "CloseMark | None":
        if value is None:
            return None
        return cls(period=value["period"], root=value["root"],
                   closed_at=datetime.fromisoformat(value["closed_at"]).astimezone(timezone.utc))

    def describe(self) -> str:
        """``2026-04 root 3fa2…`` (the whole root), as ``learnright sql`` names it."""
        return f"{self.period} root {self.root or 'none (closed before ledger schema 7)'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    snapshot_id: str
    directory: Path
    created_at: datetime
    last_entry_id: int
    chain_head: str
    tables: tuple[tuple[str, int], ...]
    last_close: CloseMark | None = None
    """The latest close (by period) the snapshot holds; None when it holds none."""

    @property
    def database(self) -> Path:
        return self.directory / DATABASE

    def manifest(self) -> dict:
        return {
            "format": FORMAT, "snapshot_id": self.snapshot_id, "created_at": self.created_at.isoformat(),
            "last_entry_id": self.last_entry_id, "chain_head": self.chain_head,
            "last_close": None if self.last_close is None else self.last_close.to_json(),
            "database": DATABASE, "tables": {name: rows for name, rows in self.tables},
            "parquet": {name: f"parquet/{name}.parquet" for name, _ in self.tables},
        }


def publish_snapshot(ledger: Ledger, directory: Path, *, now: datetime, keep_last: int = KEEP_LAST) -> Snapshot:
    """Copies the ledger, as of one commit, into a new snapshot under ``directory``, then prunes.

    Safe to call from any thread of the process that owns ``ledger``: it works on its
    own cursor. Publications (and their pruning) are serialised. Pruning keeps the newest
    ``keep_last`` and the first snapshot that covers each close (:func:`prune_snapshots`);
    a directory that cannot be pruned is logged and left for the next publish.
    """
    if now.tzinfo is None:
        raise SnapshotError(f"now must be timezone-aware UTC (got naive {now.isoformat()})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _publishing:
        work = directory / f".tmp-{uuid.uuid4().hex}"
        (work / "parquet").mkdir(parents=True)
        alias = f"snap_{uuid.uuid4().hex[:12]}"
        cursor = ledger.reader().con
        open_transaction = False
        try:
            source = cursor.execute("SELECT current_database()").fetchall()[0][0]
            # READ_WRITE: a ledger opened read-only (the `sql` command) attaches read-only by default.
            cursor.execute(f"ATTACH {_literal(work / DATABASE)} AS {alias} (READ_WRITE)")
            try:
                cursor.execute("BEGIN TRANSACTION")  # one read of the source: the ledger as of one commit
                open_transaction = True
                _copy_allowed(cursor, source, alias)
                last_entry, head = last_entry_of(
                    cursor.execute(LAST_ENTRY_SQL.format(accruals=f"{alias}.main.accruals")).fetchall())
                last_close = _last_close(cursor.execute(
                    f"SELECT * FROM {alias}.main.period_closes ORDER BY period DESC LIMIT 1"))
                names = [r[0] for r in cursor.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? ORDER BY table_name",
                    [alias],
                ).fetchall()]
                tables = []
                for name in names:
                    rows = cursor.execute(f'SELECT count(*) FROM {alias}.main."{name}"').fetchall()[0][0]
                    cursor.execute(f'COPY (SELECT * FROM {alias}.main."{name}") TO '
                                   f"{_literal(work / 'parquet' / f'{name}.parquet')} (FORMAT parquet)")
                    tables.append((name, rows))
                cursor.execute("COMMIT")
                open_transaction = False
                cursor.execute(f"CHECKPOINT {alias}")
            finally:
                if open_transaction:
                    cursor.execute("ROLLBACK")
                cursor.execute(f'USE "{source}"')
                cursor.execute(f"DETACH {alias}")
        except Exception as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise SnapshotError(f"publishing a snapshot of {ledger.path} into {directory} failed: {exc}") from exc
        finally:
            cursor.close()
        snapshot_id = f"{now:%Y%m%dT%H%M%S%fZ}-e{last_entry}"
        final = directory / snapshot_id
        snapshot = Snapshot(snapshot_id=snapshot_id, directory=final, created_at=now, last_entry_id=last_entry,
                            chain_head=head, tables=tuple(tables), last_close=last_close)
        (work / MANIFEST).write_text(json.dumps(snapshot.manifest(), indent=2, sort_keys=True) + "\n")
        for path in work.rglob("*"):
            if path.is_file():
                path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.rename(work, final)
        pointer = directory / ".LATEST.tmp"
        pointer.write_text(snapshot_id + "\n")
        pointer.replace(directory / "LATEST")
        prune_snapshots(directory, keep_last=keep_last)
        return snapshot


def _last_close(cursor) -> CloseMark | None:
    """The mark of the one ``period_closes`` row ``cursor`` selected (``SELECT *``: ``root``
    is absent from a ledger older than schema 7), or None without one."""
    rows = cursor.fetchall()
    if not rows:
        return None
    row = dict(zip([d[0] for d in cursor.description], rows[0]))
    return CloseMark(period=row["period"], root=row.get("root"),
                     closed_at=row["closed_at"].astimezone(timezone.utc))


def _last_close_from_parquet(directory: Path) -> CloseMark | None:
    """The last close of a snapshot whose manifest predates ``last_close``, read from its
    ``period_closes`` Parquet file (not its DuckDB file: a query may hold that open with
    other settings in this process)."""
    path = directory / "parquet" / "period_closes.parquet"
    if not path.exists():
        return None
    rows = pq.read_table(path).to_pylist()
    if not rows:
        return None
    row = max(rows, key=lambda r: r["period"])
    return CloseMark(period=row["period"], root=row.get("root"), closed_at=row["closed_at"].astimezone(timezone.utc))


def _copy_allowed(cursor, source: str, alias: str) -> None:
    """Creates the allowed tables (same DDL, then their rows), every macro and every view in ``alias``."""
    ddl = dict(cursor.execute("SELECT table_name, sql FROM duckdb_tables() WHERE database_name = ?"
                              " AND schema_name = 'main'", [source]).fetchall())
    views = dict(cursor.execute("SELECT view_name, sql FROM duckdb_views() WHERE database_name = ?"
                                " AND schema_name = 'main' AND NOT internal", [source]).fetchall())
    # The views' macros (audit_ledger's entry_digest): DuckDB keeps no CREATE statement for a
    # macro, so it is written from its parameters and body, parameters quoted ("position").
    macros = {name: f"CREATE MACRO {name}({', '.join(_quoted_name(p) for p in parameters)}) AS {body}"
              for name, parameters, body in cursor.execute(
                  "SELECT function_name, parameters, macro_definition FROM duckdb_functions() WHERE database_name = ?"
                  " AND schema_name = 'main' AND function_type = 'macro' AND NOT internal", [source]).fetchall()}
    allowed = [name for name in TABLES if name in ddl]
    cursor.execute(f"USE {alias}")  # unqualified DDL creates in the snapshot
    for name in allowed:
        cursor.execute(ddl[name])
    for name in _dependency_order(macros):  # a macro's body is bound when it is created
        cursor.execute(macros[name])
    for name in _dependency_order(views):
        cursor.execute(views[name])
    cursor.execute(f'USE "{source}"')
    for name in allowed:
        cursor.execute(f'INSERT INTO {alias}.main."{name}" SELECT * FROM "{source}".main."{name}"')


def _quoted_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _dependency_order(views: dict[str, str]) -> list[str]:
    """View (or macro) names ordered so that each comes after every other its SQL names."""
    reads = {name: {other for other in views if other != name and re.search(rf"\b{re.escape(other)}\b", sql)}
             for name, sql in views.items()}
    ordered: list[str] = []
    while len(ordered) < len(views):
        ready = sorted(name for name in views if name not in ordered and reads[name] <= set(ordered))
        if not ready:
            raise SnapshotError(f"views read each other in a cycle: {sorted(set(views) - set(ordered))}")
        ordered.extend(ready)
    return ordered


def read_snapshot(directory: Path, snapshot_id: str) -> Snapshot:
    """The published snapshot ``snapshot_id``; refuses a manifest format newer than this code."""
    if "/" in snapshot_id or snapshot_id.startswith("."):
        raise SnapshotError(f"no snapshot {snapshot_id!r} in {directory}")
    path = Path(directory) / snapshot_id / MANIFEST
    if not path.exists():
        raise SnapshotError(f"no snapshot {snapshot_id!r} in {directory}")
    manifest = json.loads(path.read_text())
    if manifest.get("format", 0) > FORMAT:
        raise SnapshotError(f"snapshot {path} has format {manifest['format']}; this Learnright reads up to {FORMAT}")
    last_close = (CloseMark.from_json(manifest["last_close"]) if "last_close" in manifest
                  else _last_close_from_parquet(path.parent))
    return Snapshot(
        snapshot_id=manifest["snapshot_id"], directory=path.parent,
        created_at=datetime.fromisoformat(manifest["created_at"]), last_entry_id=manifest["last_entry_id"],
        chain_head=manifest["chain_head"], tables=tuple(manifest["tables"].items()), last_close=last_close,
    )


def latest_snapshot(directory: Path) -> Snapshot | None:
    pointer = Path(directory) / "LATEST"
    if not pointer.exists():
        return None
    return read_snapshot(directory, pointer.read_text().strip())


CURRENT = "current"
"""Why :func:`snapshot_for_query` chose a snapshot: the latest one holds all the ledger holds."""
PUBLISHED = "published"
"""... the latest one lagged the ledger (or there was none), so a new one was published."""
HELD = "held"
"""... another process (the service) holds the ledger, so the latest one answers and may lag."""


def covers(snapshot: Snapshot, ledger: Ledger) -> bool:
    """Whether ``snapshot`` holds all that ``ledger`` holds of :data:`TABLES` now.

    Ledger tables are append-only, so the same last entry and chain head and as many rows
    in every copied table mean the same rows (a close, a license or a quarantined record
    adds rows without adding an entry).
    """
    if (snapshot.last_entry_id, snapshot.chain_head) != (ledger.last_entry_id, _head(ledger)):
        return False
    present = {name for (name,) in ledger.query("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")}
    copied = dict(snapshot.tables)
    return all(copied.get(name) == ledger.scalar(f'SELECT count(*) FROM "{name}"')
               for name in TABLES if name in present)


def snapshot_for_query(path: Path, directory: Path, *, now: datetime,
                       keep_last: int = KEEP_LAST) -> tuple[Snapshot, str]:
    """The snapshot an auditor's query of the ledger at ``path`` runs on, and why (:data:`CURRENT`,
    :data:`PUBLISHED` or :data:`HELD`).

    An auditor never queries the ledger file itself (it holds the API tokens); the
    ledger is opened read-only only to compare it with the latest snapshot in
    ``directory``, and to publish a new one when that one lags.

    Raises:
        LedgerLockedError: another process holds the ledger and ``directory`` has no snapshot.
        LedgerFileError: there is no ledger at ``path``.
        SnapshotError: a snapshot could not be read or published.
    """
    try:
        with Ledger.open(path, read_only=True) as ledger:
            latest = latest_snapshot(directory)
            if latest is not None and covers(latest, ledger):
                return latest, CURRENT
            return publish_snapshot(ledger, directory, now=now, keep_last=keep_last), PUBLISHED
    except LedgerLockedError as exc:
        latest = latest_snapshot(directory)
        if latest is None:
            raise LedgerLockedError(f"{path} is held by the running service and {directory} has no snapshot;"
                                    " ask the service for one (POST /v1/snapshots)") from exc
        return latest, HELD


def _head(ledger: Ledger) -> str:
    """The hash of the last row, as a snapshot's manifest records it (``chain_head``): empty without entries."""
    return last_entry_of(ledger.query(LAST_ENTRY_SQL.format(accruals="accruals")))[1]


def list_snapshots(directory: Path) -> list[Snapshot]:
    directory = Path(directory)
    if not directory.exists():
        return []
    return [read_snapshot(directory, p.name) for p in sorted(directory.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()]


def snapshot_at_close(directory: Path, period: str) -> Snapshot:
    """The first snapshot whose last close is ``period``: the ledger file as that close left it
    (the service publishes one right after each close, and retention keeps it).

    Raises:
        SnapshotError: no snapshot holds ``period`` as its last close.
    """
    found = [s for s in list_snapshots(directory) if s.last_close is not None and s.last_close.period == period]
    if not found:
        closes = sorted({s.last_close.period for s in list_snapshots(directory) if s.last_close is not None})
        raise SnapshotError(f"no snapshot in {directory} was published at the close of {period!r}"
                            f" (snapshots at closes: {', '.join(closes) or 'none'})")
    return min(found, key=lambda s: (s.created_at, s.snapshot_id))


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def snapshot_after_close(ledger: Ledger, directory: Path, *, now: datetime,
                         keep_last: int = KEEP_LAST) -> tuple[Snapshot, bool]:
    """The latest snapshot if it covers ``ledger``'s latest close, else a new one; and whether it is new.

    What keeps auditors off a snapshot older than the last close: the service's watcher
    calls it when it sees a new close, and ``POST /v1/sql`` before each query. Checked and
    published under the publishing lock, so two callers that find the same close missing
    publish one snapshot, not two. Without any snapshot, one is published.
    """
    with _publishing:
        latest = latest_snapshot(directory)
        if latest is not None and latest.last_close == CloseMark.of(ledger.latest_close()):
            return latest, False
        return publish_snapshot(ledger, directory, now=now, keep_last=keep_last), True


def retained(snapshots: Iterable[Snapshot], *, keep_last: int, latest_id: str | None) -> frozenset[str]:
    """Ids of the snapshots retention keeps: the newest ``keep_last``, the first to cover each
    close, and ``latest_id`` (the one ``LATEST`` names).

    "First to cover each close": of the snapshots whose last close is the same close, the
    oldest. A close no snapshot was published for between it and the next close is
    covered first by the one kept for that next close. Snapshots are ordered by creation
    time, then id.
    """
    ordered = sorted(snapshots, key=lambda s: (s.created_at, s.snapshot_id))
    keep = {s.snapshot_id for s in ordered[max(0, len(ordered) - keep_last):]} if keep_last > 0 else set()
    first: dict[CloseMark, str] = {}
    for snapshot in ordered:
        if snapshot.last_close is not None:
            first.setdefault(snapshot.last_close, snapshot.snapshot_id)
    keep |= set(first.values())
    if latest_id is not None:
        keep.add(latest_id)
    return frozenset(keep)


def prune_snapshots(directory: Path, *, keep_last: int) -> tuple[str, ...]:
    """Deletes the snapshots :func:`retained` does not keep, except any a reader holds; returns the deleted ids.

    A snapshot is deleted only under an exclusive ``flock`` of its manifest, which a reader
    (:func:`holding`) prevents by holding a shared one; a held snapshot is left for the
    next prune. It is renamed away first, so no reader can open it half-deleted. (A
    process that opened a snapshot's files without holding it, e.g. ``duckdb -readonly``
    on the path, keeps reading them after the deletion: Linux frees an unlinked file only
    when its last descriptor closes. Such a reader should copy a snapshot it means to keep.)
    """
    directory = Path(directory)
    pointer = directory / "LATEST"
    latest_id = pointer.read_text().strip() if pointer.exists() else None
    snapshots = list_snapshots(directory)
    keep = retained(snapshots, keep_last=keep_last, latest_id=latest_id)
    deleted = []
    for snapshot in snapshots:
        if snapshot.snapshot_id in keep:
            continue
        try:
            fd = os.open(snapshot.directory / MANIFEST, os.O_RDONLY)
        except FileNotFoundError:
            continue  # pruned by another process meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held by a reader
            trash = directory / f".pruned-{uuid.uuid4().hex}"
            os.rename(snapshot.directory, trash)
            shutil.rmtree(trash)
            deleted.append(snapshot.snapshot_id)
        except OSError:  # logged; the snapshot stays and the next publish tries again
            log.exception("pruning snapshot %s in %s failed", snapshot.snapshot_id, directory)
        finally:
            os.close(fd)
    return tuple(deleted)


@contextmanager
def holding(pick: Callable[[], Snapshot | None]) -> Iterator[Snapshot | None]:
    """Holds the snapshot ``pick`` returns against pruning for the block (a shared ``flock`` on its manifest).

    If it was pruned between being picked and being held, ``pick`` is asked again (up to
    :data:`HOLD_ATTEMPTS` times): picking the latest then gives the new latest. Yields None
    when ``pick`` does.

    Raises:
        SnapshotError: the picked snapshot was pruned every time, or ``pick`` raised it.
    """
    for attempt in range(HOLD_ATTEMPTS):
        try:
            snapshot = pick()
        except SnapshotError:
            if attempt + 1 == HOLD_ATTEMPTS:
                raise
            continue  # LATEST moved on and its old snapshot was pruned between the two reads
        if snapshot is None:
            yield None
            return
        fd = _hold(snapshot)
        if fd is not None:
            break
    else:
        raise SnapshotError(f"snapshot {snapshot.snapshot_id} in {snapshot.directory.parent} was pruned while being"
                            f" opened, {HOLD_ATTEMPTS} times in a row")
    try:
        yield snapshot
    finally:
        os.close(fd)


def _hold(snapshot: Snapshot) -> int | None:
    """A descriptor of ``snapshot``'s manifest under a shared ``flock``, or None if it is (being) pruned."""
    try:
        fd = os.open(snapshot.directory / MANIFEST, os.O_RDONLY)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits out a prune that holds it; then it is gone
    if os.fstat(fd).st_nlink == 0:
        os.close(fd)
        return None
    return fd
