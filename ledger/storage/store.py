"""The DuckDB ledger file: the only module that reads or writes it.

Guarantees:
  * One writer: DuckDB's file lock refuses a second writing process; the error says so.
  * Append-only: nothing here updates or deletes a row.
  * A batch of events, its accruals, its quarantined records and its consumer offsets
    land in one transaction, so the ledger never holds rows without their offsets.
  * Accruals are hash-chained in entry order (see :mod:`ledger.core.chain`).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import duckdb
import pyarrow as pa

from ledger.core import chain
from ledger.errors import DuplicateEventError, LedgerError, LedgerLockedError
from ledger.core.licenses import LicenseBook, build_book, merge_books, parse_book
from ledger.storage.arrow_rows import (TIMESTAMP, accruals_table, events_table, native_accruals_table, native_events_table,
                               quarantine_table, revenue_table)
from ledger.storage.migrations import migrate
from ledger.core.period_terms import ModelTraining, PeriodLine, UsageTotal
from ledger.core.pricing import Accrual
from ledger.core.usage import RevenueReport



@dataclass(frozen=True, slots=True, kw_only=True)
class EventRow:
    """One accepted event, keyed by (platform_id, event_id), with where it was read."""

    platform_id: str
    event_id: str
    event_type: str
    content_hash: str
    model_id: str | None
    occurred_at: datetime
    period: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineRow:
    """A record that could not be booked, kept whole with the reason."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    error_class: str
    reason: str
    platform_id: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestBatch:
    events: tuple[EventRow, ...] = ()
    accruals: tuple[Accrual, ...] = ()
    revenues: tuple[tuple[RevenueReport, int], ...] = ()
    quarantined: tuple[QuarantineRow, ...] = ()
    offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)
    duplicates: int = 0
    lineage: tuple["ModelLineage", ...] = ()
    native: object | None = None
    """Rows the native fast path built (``learnright_native.Rows``); appended before the rest."""

    @property
    def event_count(self) -> int:
        return len(self.events) + (self.native.event_count if self.native is not None else 0)

    @property
    def accrual_count(self) -> int:
        return len(self.accruals) + (self.native.accrual_count if self.native is not None else 0)

    def events_by_type(self) -> dict[str, int]:
        counts = dict(self.native.type_counts()) if self.native is not None else {}
        for event in self.events:
            counts[event.event_type] = counts.get(event.event_type, 0) + 1
        return counts


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLineage:
    """A fine-tune's base model, as a TrainingUsage event declared it (``base_model_id``)."""

    platform_id: str
    model_id: str
    base_model_id: str
    event_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedEntries:
    """Entries a close will append, with their ids and hashes computed from the current head."""

    lines: tuple[PeriodLine, ...]
    values: tuple[tuple, ...]
    hashes: tuple[str, ...]
    last_entry_id: int
    chain_head: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    batch_id: int
    first_entry_id: int
    last_entry_id: int
    chain_head: str

@dataclass(frozen=True, slots=True, kw_only=True)
class CloseRecord:
    period: str
    closed_at: datetime
    last_entry_id: int
    chain_head: str
    statements: int


def anchor_path(db: Path) -> Path:
    """The anchor file beside a ledger: its last entry and chain head, outside the DuckDB file."""
    return db.with_name(db.name + ".anchor")


def _write_anchor(db: Path, last_entry_id: int, head: str) -> None:
    target = anchor_path(db)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps({"last_entry_id": last_entry_id, "chain_head": head}))
    temporary.replace(target)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Ledger:
    """An open ledger file. Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool):
        self.con = con
        self.path = path
        self.read_only = read_only
        self._book: tuple[int, LicenseBook] | None = None
        self._helper: ThreadPoolExecutor | None = None
        self._head, self._last_entry = self._chain_state()
        self._last_batch = con.execute("SELECT coalesce(max(batch_id), 0) FROM ingest_batches").fetchall()[0][0]
        self._last_quarantine = con.execute("SELECT coalesce(max(quarantine_id), 0) FROM quarantine").fetchall()[0][0]

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> "Ledger":
        """Opens (creating, unless read-only) and migrates the ledger at ``path``.

        Raises:
            LedgerLockedError: another process holds the file as writer.
            LedgerVersionError: the file was written by a newer Learnright.
        """
        path = Path(path)
        if read_only and not path.exists():
            raise LedgerError(f"ledger file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise LedgerLockedError(
                    f"ledger file {path} is held by another process (its single writer): {exc}"
                ) from exc
            raise LedgerError(f"cannot open ledger file {path}: {exc}") from exc
        con.execute("SET TimeZone = 'UTC'")
        migrate(con, path, read_only)
        return cls(con, path, read_only)

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown()
        self.con.close()

    def _aside(self) -> ThreadPoolExecutor:
        """One helper thread for native work that overlaps a DuckDB statement."""
        if self._helper is None:
            self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-aside")
        return self._helper

    # -- chain ---------------------------------------------------------------------------

    def _chain_state(self) -> tuple[str, int]:
        rows = self.con.execute(
            "SELECT entry_hash, entry_id FROM accruals ORDER BY entry_id DESC LIMIT 1"
        ).fetchall()
        return (rows[0][0], rows[0][1]) if rows else (chain.GENESIS, 0)

    @property
    def chain_head(self) -> str:
        return self._head

    @property
    def last_entry_id(self) -> int:
        return self._last_entry

    # -- licenses ------------------------------------------------------------------------

    def load_book(self) -> LicenseBook:
        """Every license document applied so far, merged in the order applied.

        Parsed once per set of documents: the book is cached until one is added.
        """
        count = self.con.execute("SELECT count(*) FROM license_documents").fetchall()[0][0]
        if self._book is not None and self._book[0] == count:
            return self._book[1]
        book = build_book({}, {}, ())
        for origin, body in self.con.execute(
            "SELECT origin, body FROM license_documents ORDER BY applied_at, document_hash"
        ).fetchall():
            book = merge_books(book, parse_book(body, origin))
        self._book = (count, book)
        return book

    def apply_licenses(self, body: str, origin: str) -> tuple[LicenseBook, int]:
        """Parses and stores a license document; returns the merged book and new versions.

        Re-applying the same document adds nothing. A document that changes an existing
        (license, version) is refused whole.
        """
        current = self.load_book()
        merged = merge_books(current, parse_book(body, origin))
        known = {(v.license_id, v.version) for v in current.versions}
        added = [v for v in merged.versions if (v.license_id, v.version) not in known]
        document_hash = hashlib.sha256(body.encode()).hexdigest()
        with self._transaction():
            exists = self.con.execute(
                "SELECT 1 FROM license_documents WHERE document_hash = ?", [document_hash]
            ).fetchall()
            if not exists:
                self.con.execute(
                    "INSERT INTO license_documents VALUES (?, ?, ?, ?)", [document_hash, origin, body, _now()]
                )
            for v in added:
                self.con.execute(
                    "INSERT INTO license_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [v.license_id, v.version, v.source_id, v.platform_id, v.effective_from, v.currency,
                     json.dumps(v.terms, sort_keys=True), v.content_hash, document_hash],
                )
        return merged, len(added)

    # -- ingestion -----------------------------------------------------------------------

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to read per (topic, partition), as committed with the ledger rows."""
        rows = self.con.execute(
            "SELECT topic, kafka_partition, max(next_offset) FROM consumer_offsets GROUP BY ALL"
        ).fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def _rows_for_keys(self, keys: Sequence[tuple[str, str]], sql: str) -> list[tuple]:
        """Runs ``sql`` with the (platform_id, event_id) ``keys`` as the table ``_probe_keys``."""
        if not keys:
            return []
        probe = pa.table({"platform_id": [k[0] for k in keys], "event_id": [k[1] for k in keys]})
        self.con.register("_probe_keys", probe)
        try:
            return self.con.execute(sql).fetchall()
        finally:
            self.con.unregister("_probe_keys")

    def known_events(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Content hashes of the events among ``keys`` already in the ledger."""
        rows = self._rows_for_keys(keys, "SELECT u.platform_id, u.event_id, u.content_hash FROM usage_events u"
                                         " JOIN _probe_keys p USING (platform_id, event_id)")
        return {(p, e): h for p, e, h in rows}

    def booked_entries(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[tuple[int, Accrual], ...]]:
        """The entries (id, accrual) booked for each event among ``keys``, in entry order."""
        rows = self._rows_for_keys(keys, f"SELECT {', '.join(chain.ENTRY_FIELDS)} FROM accruals"
                                         " JOIN _probe_keys USING (platform_id, event_id) ORDER BY entry_id")
        found: dict[tuple[str, str], list[tuple[int, Accrual]]] = {}
        for row in rows:
            values = dict(zip(chain.ENTRY_FIELDS, row))
            entry_id = values.pop("entry_id")
            values["description"] = values["description"] or ""
            found.setdefault((values["platform_id"], values["event_id"]), []).append((entry_id, Accrual(**values)))
        return {key: tuple(entries) for key, entries in found.items()}

    def corrections_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """For each event among ``keys`` already corrected, the event id of its correction."""
        rows = self._rows_for_keys(keys, "SELECT DISTINCT o.platform_id, o.event_id, r.event_id FROM accruals o"
                                         " JOIN _probe_keys USING (platform_id, event_id)"
                                         " JOIN accruals r ON r.reverses_entry_id = o.entry_id")
        return {(p, e): c for p, e, c in rows}

    def open_quarantine(self, ids: Sequence[int] | None = None) -> list[tuple]:
        """Quarantined records not booked since (no accepted event read at their offset)."""
        return self.con.execute(
            """
            SELECT q.quarantine_id, q.topic, q.kafka_partition, q.kafka_offset, q.record_key, q.record_value,
                   q.headers, q.error_class, q.reason, q.platform_id, q.event_id, q.quarantined_at
            FROM quarantine q
            WHERE NOT EXISTS (SELECT 1 FROM usage_events u WHERE u.topic = q.topic
                              AND u.kafka_partition = q.kafka_partition AND u.kafka_offset = q.kafka_offset)
              AND (? IS NULL OR list_contains(?, q.quarantine_id))
            ORDER BY q.quarantine_id
            """,
            [None if ids is None else list(ids), None if ids is None else list(ids)],
        ).fetchall()

    def open_quarantine_count(self, error_class: str) -> int:
        return self.con.execute(
            """
            SELECT count(*) FROM quarantine q WHERE error_class = ? AND NOT EXISTS (
                SELECT 1 FROM usage_events u WHERE u.topic = q.topic
                AND u.kafka_partition = q.kafka_partition AND u.kafka_offset = q.kafka_offset)
            """,
            [error_class],
        ).fetchall()[0][0]

    def append_batch(self, batch: IngestBatch) -> BatchResult:
        """Appends a batch and its offsets in one transaction; all of it or none.

        Entries are numbered and chained in order: the native fast path's first, then the rest.

        Raises:
            DuplicateEventError: a fast-path event is booked already (nothing was appended);
                the reference path, which probes the ledger, must build the batch.
        """
        batch_id = self._last_batch + 1
        first = self._last_entry + 1
        native = batch.native
        native_accruals = native.accrual_count if native is not None else 0
        # The native chain runs (outside the GIL) while DuckDB appends the events.
        chained = self._aside().submit(native.chain, self._head, first) if native_accruals else None
        python_first = first + native_accruals
        values = [
            (entry_id, *(getattr(a, name) for name in chain.ENTRY_FIELDS[1:]))
            for entry_id, a in zip(range(python_first, python_first + len(batch.accruals)), batch.accruals)
        ]
        now = _now()
        try:
            with self._transaction():
                if native is not None and native.event_count:
                    self._insert("usage_events", native_events_table(native, batch_id))
                head = self._head
                if chained is not None:
                    native_hashes, head = chained.result()
                    self._insert("accruals", native_accruals_table(native, first, native_hashes, batch_id))
                hashes = chain.chain_accruals(head, python_first, batch.accruals)
                head = hashes[-1] if hashes else head
                self._append_rows(batch, batch_id, values, hashes, now)
                self.con.execute(
                    "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [batch_id, now, batch.event_count, native_accruals + len(values), len(batch.quarantined),
                     batch.duplicates, head],
                )
        except duckdb.ConstraintException as exc:
            if native is None:
                raise
            raise DuplicateEventError(f"a fast-path event of batch {batch_id} is booked already: {exc}") from exc
        finally:
            if chained is not None and not chained.cancel():
                chained.exception()  # waits: the chain never runs on past its batch
        self._last_batch = batch_id
        self._last_entry = first + native_accruals + len(values) - 1
        self._last_quarantine += len(batch.quarantined)
        self._head = head
        if native_accruals or values:
            _write_anchor(self.path, self._last_entry, head)
        return BatchResult(batch_id=batch_id, first_entry_id=first, last_entry_id=self._last_entry, chain_head=head)

    def _append_rows(self, batch: IngestBatch, batch_id: int, values: list[tuple], hashes: list[str],
                     now: datetime) -> None:
        """Inserts the batch's Python-built rows and offsets (inside the caller's transaction)."""
        if batch.events:
            self._insert("usage_events", events_table(batch.events, batch_id))
        if values:
            self._insert("accruals", accruals_table(values, hashes, batch_id))
        if batch.revenues:
            self._insert("revenue_reports", revenue_table(batch.revenues, batch_id))
        if batch.lineage:
            self._insert("model_lineage", pa.table({
                "platform_id": [m.platform_id for m in batch.lineage],
                "model_id": [m.model_id for m in batch.lineage],
                "base_model_id": [m.base_model_id for m in batch.lineage],
                "event_id": [m.event_id for m in batch.lineage],
                "occurred_at": pa.array([m.occurred_at for m in batch.lineage], TIMESTAMP),
                "batch_id": pa.array([batch_id] * len(batch.lineage), pa.int64()),
            }))
        if batch.quarantined:
            self._insert(
                "quarantine", quarantine_table(batch.quarantined, self._last_quarantine + 1, batch_id, now)
            )
        if batch.offsets:
            self._insert("consumer_offsets", pa.table({
                "batch_id": pa.array([batch_id] * len(batch.offsets), pa.int64()),
                "topic": [tp[0] for tp in batch.offsets],
                "kafka_partition": pa.array([tp[1] for tp in batch.offsets], pa.int32()),
                "next_offset": pa.array(list(batch.offsets.values()), pa.int64()),
            }))

    def _insert(self, table: str, data: pa.Table) -> None:
        self.con.register("_batch", data)
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

    def _transaction(self):
        return _Transaction(self.con)

    # -- queries -------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    # -- close and statements ------------------------------------------------------------

    def latest_close(self, before: str | None = None) -> CloseRecord | None:
        sql = "SELECT period, closed_at, last_entry_id, chain_head, statements FROM period_closes"
        params: list[object] = []
        if before is not None:
            sql += " WHERE period < ?"
            params.append(before)
        rows = self.con.execute(sql + " ORDER BY period DESC LIMIT 1", params).fetchall()
        row = rows[0] if rows else None
        return None if row is None else CloseRecord(
            period=row[0], closed_at=row[1], last_entry_id=row[2], chain_head=row[3], statements=row[4]
        )


    def get_close(self, period: str) -> CloseRecord | None:
        row = self.con.execute(
            "SELECT period, closed_at, last_entry_id, chain_head, statements FROM period_closes WHERE period = ?",
            [period],
        ).fetchall()
        row = row[0] if row else None
        return None if row is None else CloseRecord(
            period=row[0], closed_at=row[1], last_entry_id=row[2], chain_head=row[3], statements=row[4]
        )


    def open_periods_through(self, period: str, after: str | None) -> list[str]:
        """Periods up to ``period`` that have accruals and come after the last close."""
        rows = self.con.execute(
            "SELECT DISTINCT period FROM accruals WHERE period <= ? AND (? IS NULL OR period > ?) ORDER BY period",
            [period, after, after],
        ).fetchall()
        return [r[0] for r in rows]


    def statement_lines(self, period: str, watermark: int, previous_watermark: int) -> list[tuple]:
        """Accruals a close of ``period`` at ``watermark`` covers, summed per statement line.

        Covered: entries of ``period`` up to the watermark, plus entries of earlier periods
        that arrived after the previous close (prior-period adjustments).
        """
        return self.con.execute(
            """
            SELECT holder_id, currency, period, source_id, platform_id, model_id, kind, unit, rate, per,
                   license_id, license_version, sum(quantity), sum(amount), count(*), description
            FROM accruals
            WHERE entry_id <= ? AND (period = ? OR (period < ? AND entry_id > ?))
            GROUP BY ALL
            """,
            [watermark, period, period, previous_watermark],
        ).fetchall()


    def carry_ins(self, before: str) -> dict[tuple[str, str], Decimal]:
        """Each (holder, currency)'s carry out of its latest statement before ``before``."""
        rows = self.con.execute(
            """
            SELECT holder_id, currency, arg_max(carry_out, period)
            FROM statements WHERE period < ? GROUP BY ALL
            """,
            [before],
        ).fetchall()
        return {(h, c): amount for h, c, amount in rows}


    def record_close(
        self,
        close: CloseRecord,
        statements: Iterable[tuple[object, str, bytes, str, str]],
        *,
        planned: PlannedEntries | None = None,
        settled_revenue: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Stores a close, its period entries and its statements in one transaction.

        ``planned`` entries (see :meth:`plan_entries`) are appended to the hash chain as
        one batch; ``settled_revenue`` marks (platform, event) revenue reports as settled
        by this close. A closed period is never rewritten; on any error nothing is stored.
        """
        planned_values = planned.values if planned is not None else ()
        batch_id = self._last_batch + 1
        with self._transaction():
            if planned_values:
                if planned_values[0][0] != self._last_entry + 1:
                    raise LedgerError(
                        f"planned entries start at {planned_values[0][0]} but the ledger ends at {self._last_entry}"
                    )
                self._insert("accruals", accruals_table(planned_values, planned.hashes, batch_id))
                self.con.execute(
                    "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [batch_id, close.closed_at, 0, len(planned_values), 0, 0, planned.chain_head],
                )
            if settled_revenue:
                self._insert("revenue_settlements", pa.table({
                    "platform_id": [p for p, _ in settled_revenue],
                    "event_id": [e for _, e in settled_revenue],
                    "close_period": [close.period] * len(settled_revenue),
                }))
            self.con.execute(
                "INSERT INTO period_closes VALUES (?, ?, ?, ?, ?)",
                [close.period, close.closed_at, close.last_entry_id, close.chain_head, close.statements],
            )
            for statement, digest, document, signature, key_fingerprint in statements:
                self.con.execute(
                    "INSERT INTO statements (statement_id, period, holder_id, currency, format_version, accrued,"
                    " carry_in, payable, carry_out, content_hash, document, created_at, signature, key_fingerprint)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [statement.statement_id, statement.period, statement.holder_id, statement.currency,
                     statement.format_version, statement.accrued, statement.carry_in, statement.payable,
                     statement.carry_out, digest, document.decode(), close.closed_at, signature, key_fingerprint],
                )
        if planned_values:
            self._last_batch = batch_id
            self._last_entry = planned.last_entry_id
            self._head = planned.chain_head
            _write_anchor(self.path, self._last_entry, self._head)

    # -- period terms --------------------------------------------------------------------

    def plan_entries(self, lines: Sequence[PeriodLine]) -> PlannedEntries:
        """Entry ids and chain hashes ``lines`` would get if appended now; nothing is written."""
        first = self._last_entry + 1
        values = tuple(
            (entry_id, *(getattr(line, name) for name in chain.ENTRY_FIELDS[1:]))
            for entry_id, line in zip(range(first, first + len(lines)), lines)
        )
        hashes = tuple(chain.chain(self._head, values))
        return PlannedEntries(
            lines=tuple(lines), values=values, hashes=hashes, last_entry_id=first + len(lines) - 1,
            chain_head=hashes[-1] if hashes else self._head,
        )

    def usage_totals(self, periods: Sequence[str], watermark: int) -> list[UsageTotal]:
        """Per-event accruals (training, inference) of ``periods`` up to ``watermark``, summed."""
        rows = self.con.execute(
            """
            SELECT period, platform_id, source_id, kind, license_id, license_version, currency, unit,
                   sum(quantity), sum(amount)
            FROM accruals
            WHERE entry_id <= ? AND list_contains(?, period) AND kind IN ('training', 'inference')
            GROUP BY ALL ORDER BY ALL
            """,
            [watermark, list(periods)],
        ).fetchall()
        return [
            UsageTotal(period=r[0], platform_id=r[1], source_id=r[2], kind=r[3], license_id=r[4], license_version=r[5],
                       currency=r[6], unit=r[7], quantity=r[8], amount=r[9])
            for r in rows
        ]

    def model_training(self, through: str, watermark: int) -> list[ModelTraining]:
        """Training units per platform, model, source and month up to ``through``."""
        rows = self.con.execute(
            """
            SELECT platform_id, model_id, source_id, period, sum(quantity)
            FROM accruals WHERE entry_id <= ? AND period <= ? AND kind = 'training'
            GROUP BY ALL ORDER BY ALL
            """,
            [watermark, through],
        ).fetchall()
        return [ModelTraining(platform_id=r[0], model_id=r[1], source_id=r[2], period=r[3], units=r[4]) for r in rows]

    def model_lineage(self) -> dict[tuple[str, str], str]:
        """The base of each fine-tuned (platform, model): the first declared, by occurred_at then event."""
        rows = self.con.execute(
            """
            SELECT platform_id, model_id, arg_min(base_model_id, (occurred_at, event_id))
            FROM model_lineage GROUP BY ALL
            """
        ).fetchall()
        return {(p, m): base for p, m, base in rows}

    def unsettled_revenue(self, through: str) -> list[RevenueReport]:
        """Revenue reports for months up to ``through`` that no close has settled yet."""
        rows = self.con.execute(
            """
            SELECT r.event_id, r.platform_id, r.model_id, r.period, r.revenue, r.currency, r.occurred_at
            FROM revenue_reports r
            WHERE r.period <= ? AND NOT EXISTS (
                SELECT 1 FROM revenue_settlements s WHERE s.platform_id = r.platform_id AND s.event_id = r.event_id)
            ORDER BY r.period, r.platform_id, r.event_id
            """,
            [through],
        ).fetchall()
        return [
            RevenueReport(event_id=r[0], platform_id=r[1], model_id=r[2], period=r[3], revenue=r[4], currency=r[5],
                          occurred_at=r[6])
            for r in rows
        ]


    def statement_rows(self, period: str | None = None, holder_id: str | None = None) -> list[tuple]:
        return self.con.execute(
            """
            SELECT statement_id, period, holder_id, currency, accrued, carry_in, payable, carry_out, content_hash
            FROM statements
            WHERE (? IS NULL OR period = ?) AND (? IS NULL OR holder_id = ?)
            ORDER BY period, holder_id, currency
            """,
            [period, period, holder_id, holder_id],
        ).fetchall()


    # -- readers and API tokens (issue 7) -------------------------------------------------

    def reader(self) -> "Ledger":
        """A read view on its own DuckDB cursor, for another thread of this process.

        The file stays owned by this instance (its single writer); a DuckDB connection
        must not be shared between threads, a cursor per thread may.
        """
        return Ledger(self.con.cursor(), self.path, read_only=True)

    def record_token(self, *, token_id: str, secret_sha256: str, role: str, holder_id: str | None, label: str,
                     created_at: datetime, expires_at: datetime | None) -> None:
        """Stores an API token's hash (never the secret) and its expiry, in one transaction."""
        with self._transaction():
            self.con.execute("INSERT INTO api_tokens VALUES (?, ?, ?, ?, ?, ?)",
                             [token_id, secret_sha256, role, holder_id, label, created_at])
            if expires_at is not None:
                self.con.execute("INSERT INTO api_token_changes VALUES (?, 'expires', ?, ?)",
                                 [token_id, expires_at, created_at])

    def record_token_change(self, token_id: str, change: str, effective_at: datetime, recorded_at: datetime) -> None:
        """Appends a change ('revoked', 'expires') to a token; earlier rows stay as they were."""
        self.con.execute("INSERT INTO api_token_changes VALUES (?, ?, ?, ?)", [token_id, change, effective_at, recorded_at])

    def token_rows(self, token_id: str | None = None) -> list[tuple]:
        """(token_id, secret_sha256, role, holder_id, label, created_at, expires_at, revoked_at) per token.

        Expiry is the latest recorded 'expires' row; revocation the earliest 'revoked' row.
        """
        return self.con.execute(
            """
            SELECT t.token_id, t.secret_sha256, t.role, t.holder_id, t.label, t.created_at,
                   arg_max(c.effective_at, c.recorded_at) FILTER (WHERE c.change = 'expires'),
                   min(c.effective_at) FILTER (WHERE c.change = 'revoked')
            FROM api_tokens t LEFT JOIN api_token_changes c USING (token_id)
            WHERE (? IS NULL OR t.token_id = ?)
            GROUP BY ALL ORDER BY t.created_at, t.token_id
            """,
            [token_id, token_id],
        ).fetchall()

    def statement_document(self, statement_id: str) -> tuple[str, str] | None:
        row = self.con.execute(
            "SELECT document, content_hash FROM statements WHERE statement_id = ?", [statement_id]
        ).fetchall()
        return (row[0][0], row[0][1]) if row else None

    def statement_signature(self, statement_id: str) -> tuple[str, str] | None:
        """(signature, key fingerprint) of a statement; None for one closed before statements were signed."""
        row = self.con.execute(
            "SELECT signature, key_fingerprint FROM statements WHERE statement_id = ? AND signature IS NOT NULL",
            [statement_id],
        ).fetchall()
        return (row[0][0], row[0][1]) if row else None

    # -- StatementClosed outbox ----------------------------------------------------------

    def unpublished_statements(self) -> list[tuple]:
        """Signed statements whose StatementClosed event is not recorded as published, oldest first.

        Rows: statement_id, period, holder_id, currency, accrued, carry_in, payable, carry_out,
        content_hash, document, created_at, signature, key_fingerprint.
        """
        return self.con.execute(
            """
            SELECT s.statement_id, s.period, s.holder_id, s.currency, s.accrued, s.carry_in, s.payable, s.carry_out,
                   s.content_hash, s.document, s.created_at, s.signature, s.key_fingerprint
            FROM statements s
            WHERE s.signature IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM statement_publications p WHERE p.statement_id = s.statement_id)
            ORDER BY s.period, s.holder_id, s.currency
            """
        ).fetchall()

    def record_publications(self, published: Sequence[tuple[str, str, int, int]], at: datetime) -> None:
        """Records (statement_id, topic, partition, offset) as acknowledged by the broker."""
        if not published:
            return
        with self._transaction():
            self._insert("statement_publications", pa.table({
                "statement_id": [p[0] for p in published],
                "topic": [p[1] for p in published],
                "kafka_partition": pa.array([p[2] for p in published], pa.int32()),
                "kafka_offset": pa.array([p[3] for p in published], pa.int64()),
                "published_at": pa.array([at] * len(published), TIMESTAMP),
            }))


class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def __enter__(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.con.execute("COMMIT")
        else:
            self.con.execute("ROLLBACK")
