"""Monthly closes in the ledger file: what a close reads, and the one transaction that stores it.

Guarantees:
  * A close, its period entries (appended as one batch), its settled revenue, its
    commitment (cut-off, stream heads, book, root) and its statements are stored in one
    transaction; on any error, nothing.
  * A closed period is never rewritten.
  * What a close covers is decided by local watermarks (row numbers of this file), but
    the commitment over it is not: stream heads fold the covered entries' digests in
    (stream, position, line) order, whatever order they were booked in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Iterable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ledger.core import chain
from ledger.core.period_terms import PeriodLine
from ledger.core.records import (ClosedDistribution, CloseCommitment, CloseRecord, PlannedEntries,
                                 SignedStatement, StreamHead)
from ledger.core.statements import StatementLine
from ledger.errors import LedgerFileError
from ledger.storage.arrow_rows import DECIMAL, TIMESTAMP, accruals_table
from ledger.storage.collectives import record_distributions
from ledger.storage.connection import ChainTip, Db
from ledger.storage.covered import COVERED
from ledger.storage.entry_digests import fold_entries, fold_entries_in_stored_order, folds_in_stored_order
from ledger.storage.line_ranges import RANGE_LINES, LineRange, line_groups

_CLOSE_COLUMNS = "period, closed_at, last_entry_id, chain_head, statements, root, book_hash"

STATEMENT_LINES_SQL = f"""
SELECT holder_id, currency, period, source_id, platform_id, model_id, kind, unit, rate, per,
       license_id, license_version, sum(quantity), sum(amount), count(*), description
FROM accruals
WHERE {COVERED}
GROUP BY ALL
ORDER BY holder_id, currency
"""
"""A close's statement lines: covered accruals summed per holder, currency and line, one statement's
lines after another. Parameters as :data:`ledger.storage.covered.COVERED`'s."""

CHUNK = 65_536
"""Entries fetched at a time while a close folds their digests."""

LEGACY_STREAM = "legacy"
"""The stream a close folds entries booked before format 3 (schema 7) into, by row number."""

STATEMENT_CHUNK = 1_000
"""Signed statements inserted at a time as a close streams them into its transaction: what bounds a
close's memory for documents (a few MB), whatever the number of statements."""


def statements_table(statements: Sequence[SignedStatement], created_at: datetime) -> pa.Table:
    """A close's signed statements as one Arrow batch of ``statements`` rows (one insert, not one per statement)."""
    amounts = {name: pa.array([getattr(signed.statement, name) for signed in statements], DECIMAL)
               for name in ("accrued", "carry_in", "payable", "carry_out")}
    return pa.table({
        "statement_id": [signed.statement.statement_id for signed in statements],
        "period": [signed.statement.period for signed in statements],
        "holder_id": [signed.statement.holder_id for signed in statements],
        "currency": [signed.statement.currency for signed in statements],
        "format_version": pa.array([signed.statement.format_version for signed in statements], pa.int32()),
        **amounts,
        "content_hash": [signed.content_hash for signed in statements],
        "document": [signed.document.decode() for signed in statements],
        "created_at": pa.array([created_at] * len(statements), TIMESTAMP),
        "signature": [signed.signature for signed in statements],
        "key_fingerprint": [signed.key_fingerprint for signed in statements],
    })


def _chunks(items: Iterator[SignedStatement], size: int) -> Iterator[tuple[SignedStatement, ...]]:
    """``items`` ``size`` at a time (the last chunk shorter), drawn as they come."""
    while chunk := tuple(itertools.islice(items, size)):
        yield chunk


def _checked_after(last: tuple[str, str] | None, batches: list[pa.RecordBatch]) -> tuple[str, str]:
    """The last key of ``batches`` (one range's, in order), checked to come after ``last`` (the range before's).

    Raises:
        LedgerFileError: the range's first key is not after ``last``.
    """
    first = (batches[0].column(0)[0].as_py(), batches[0].column(1)[0].as_py())
    if last is not None and first <= last:
        raise LedgerFileError(f"statement lines of {first!r} came after {last!r}: not in (holder, currency) order")
    return batches[-1].column(0)[-1].as_py(), batches[-1].column(1)[-1].as_py()


def _close(row: tuple) -> CloseRecord:
    period, closed_at, last_entry_id, chain_head, statements, root, book_hash = row
    return CloseRecord(period=period, closed_at=closed_at, last_entry_id=last_entry_id, chain_head=chain_head,
                       statements=statements, root=root, book_hash=book_hash)


class CloseRepository:
    """``period_closes`` and ``statements`` as a close writes them, and the accruals it sums."""

    def __init__(self, db: Db, tip: ChainTip):
        self.db = db
        self.tip = tip

    def latest_close(self, before: str | None = None) -> CloseRecord | None:
        """The latest close (of a period before ``before``, when given)."""
        rows = self.db.rows(
            f"SELECT {_CLOSE_COLUMNS} FROM period_closes WHERE (? IS NULL OR period < ?) ORDER BY period DESC LIMIT 1",
            [before, before],
        )
        return _close(rows[0]) if rows else None

    def get_close(self, period: str) -> CloseRecord | None:
        rows = self.db.rows(f"SELECT {_CLOSE_COLUMNS} FROM period_closes WHERE period = ?", [period])
        return _close(rows[0]) if rows else None

    def closes(self) -> list[CloseRecord]:
        """Every close, oldest period first."""
        return [_close(row) for row in self.db.rows(f"SELECT {_CLOSE_COLUMNS} FROM period_closes ORDER BY period")]

    def open_periods_through(self, period: str, after: str | None) -> list[str]:
        """Periods up to ``period`` that have accruals and come after the last close."""
        rows = self.db.rows(
            "SELECT DISTINCT period FROM accruals WHERE period <= ? AND (? IS NULL OR period > ?) ORDER BY period",
            [period, after, after],
        )
        return [period for (period,) in rows]

    def statement_line_groups(self, period: str, watermark: int, previous_watermark: int
                              ) -> Iterator[tuple[tuple[str, str], list[StatementLine]]]:
        """A close's statement lines (:data:`STATEMENT_LINES_SQL`: accruals of ``period`` up to the watermark, plus
        earlier periods' entries booked after the previous close), one (holder, currency) at a time, in increasing
        (holder, currency).

        Streamed from Arrow batches of :data:`CHUNK` lines, so a close holds the line
        objects of one statement at a time, not of the month (about 1.5 KB a line).

        Raises:
            LedgerFileError: DuckDB returned the groups out of Python's string order (a
                collation other than the binary one), which a close's merge relies on.
        """
        cursor = self.db.cursor()
        try:
            yield from line_groups(cursor.execute(STATEMENT_LINES_SQL, [watermark, period, period, previous_watermark]
                                                  ).to_arrow_reader(CHUNK))
        finally:
            cursor.close()

    def statement_line_ranges(self, period: str, watermark: int, previous_watermark: int,
                              lines: int | None = None) -> Iterator[LineRange]:
        """The lines of :meth:`statement_line_groups` as consecutive :class:`LineRange` values of whole
        statements, about ``lines`` (:data:`RANGE_LINES`) lines each, in increasing (holder, currency); none when there are no lines.

        Raises:
            LedgerFileError: as :meth:`statement_line_groups` (a range starts at or before the last
                key of the one before it).
        """
        cursor = self.db.cursor()
        try:
            pending: list[pa.RecordBatch] = []
            last: tuple[str, str] | None = None
            for batch in cursor.execute(STATEMENT_LINES_SQL, [watermark, period, period, previous_watermark]
                                        ).to_arrow_reader(lines or RANGE_LINES):
                if not batch.num_rows:
                    continue
                key = (batch.column(0)[-1].as_py(), batch.column(1)[-1].as_py())
                # Sorted by key: the rows of the batch's last key are its tail, held for the next range.
                cut = pc.index(pc.and_(pc.equal(batch.column(0), key[0]), pc.equal(batch.column(1), key[1])),
                               True).as_py()
                if cut > 0:
                    last = _checked_after(last, pending + [batch.slice(0, cut)])
                    yield LineRange(lines=pa.Table.from_batches(pending + [batch.slice(0, cut)]), last_key=last)
                    pending = []
                pending.append(batch.slice(cut))
            if pending:
                last = _checked_after(last, pending)
                yield LineRange(lines=pa.Table.from_batches(pending), last_key=last)
        finally:
            cursor.close()

    def carry_ins(self, before: str) -> dict[tuple[str, str], Decimal]:
        """Each (holder, currency)'s carry out of its latest statement before ``before``."""
        rows = self.db.rows(
            "SELECT holder_id, currency, arg_max(carry_out, period) FROM statements WHERE period < ? GROUP BY ALL",
            [before],
        )
        return {(holder, currency): amount for holder, currency, amount in rows}

    def plan_entries(self, lines: Sequence[PeriodLine], period: str) -> PlannedEntries:
        """The period lines of closing ``period`` keyed in its stream, with digests and row numbers; nothing is written.

        The digests are what the close folds into the stream ``close/<period>``; they are not stored
        (schema 14): verify computes them again from the appended rows."""
        stream = chain.close_stream(period)
        keyed = tuple(replace(line, stream=stream, position=index) for index, line in enumerate(lines))
        values = tuple(tuple(getattr(line, name) for name in chain.ENTRY_FIELDS) for line in keyed)
        first = self.tip.next_entry(len(lines))
        return PlannedEntries(lines=keyed, values=values, hashes=tuple(map(chain.digest, values)),
                              first_entry_id=first, last_entry_id=first + len(lines) - 1)

    def stream_heads(self, before: str) -> dict[str, StreamHead]:
        """Every stream's head as of the latest close before ``before``."""
        rows = self.db.rows(
            "SELECT stream, arg_max(entries, period), arg_max(head, period) FROM close_streams"
            " WHERE period < ? GROUP BY stream", [before])
        return {stream: StreamHead(stream=stream, entries=entries, head=head) for stream, entries, head in rows}

    def covered_heads(self, period: str, watermark: int, previous_watermark: int,
                      start: Mapping[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
        """Folds the digest of every entry a close covers onto ``start``: the (count, head) of each stream touched.

        An entry's digest (format 3) is computed from its stored fields
        (:mod:`ledger.storage.entry_digests`) and folded in (position, line) order within its
        stream: the rows as stored when each stream's keys rise in them (checked), else sorted; a digest
        stored beside an entry before schema 14 is not read (it is the same, or the row
        was edited). An entry stored before format 3 has no stream from the log: it folds
        into stream ``legacy`` by its row number, with its stored format-2 hash.
        """
        params = [watermark, period, period, previous_watermark]
        covered = f"SELECT {', '.join(chain.ENTRY_FIELDS)} FROM accruals WHERE {COVERED} AND stream IS NOT NULL"
        cursor = self.db.cursor()
        try:
            # As stored first (DuckDB keeps insertion order): no sort of the covered rows, which is
            # most of the fold's cost; sorted by key only when the stored order is not the key order.
            heads = None
            if folds_in_stored_order():
                heads = fold_entries_in_stored_order(cursor.execute(covered, params).to_arrow_reader(CHUNK), start)
            if heads is None:
                heads = fold_entries(cursor.execute(covered + " ORDER BY stream, position, line", params
                                                    ).to_arrow_reader(CHUNK), start)
            legacy = cursor.execute(
                f"SELECT entry_hash FROM accruals WHERE {COVERED} AND stream IS NULL ORDER BY entry_id",
                params).to_arrow_reader(CHUNK)
            # Columns, not a tuple per row (one row per covered entry), folded in one pass over the batches.
            digests = ((LEGACY_STREAM, h) for batch in legacy for h in batch.column(0).to_pylist())
            heads.update(chain.fold_streams(digests, {**start, **heads}))
            return heads
        finally:
            cursor.close()

    def close_cutoff(self, period: str) -> dict[tuple[str, int], int]:
        """The next offset per (topic, partition) a format-3 close booked up to."""
        rows = self.db.rows("SELECT topic, kafka_partition, next_offset FROM close_cutoffs WHERE period = ?", [period])
        return {(topic, partition): offset for topic, partition, offset in rows}

    def close_streams(self, period: str) -> dict[str, StreamHead]:
        """The heads of the streams a format-3 close folded entries into."""
        rows = self.db.rows("SELECT stream, entries, head FROM close_streams WHERE period = ?", [period])
        return {stream: StreamHead(stream=stream, entries=entries, head=head) for stream, entries, head in rows}

    def record_close(
        self,
        close: CloseRecord,
        statements: Iterable[SignedStatement],
        *,
        planned: PlannedEntries | None = None,
        settled_revenue: Sequence[tuple[str, str]] = (),
        commitment: CloseCommitment | None = None,
        distributions: Sequence[ClosedDistribution] = (),
    ) -> None:
        """Stores a close, its period entries and its statements in one transaction.

        ``statements`` may be a generator: it is consumed inside the transaction and inserted
        :data:`STATEMENT_CHUNK` at a time, so the close never holds every document of the month.
        The close is stored with the number of statements that came (``close.statements`` is
        not used). ``distributions`` (collectives' splits and their members' signed statements)
        land in the same transaction, read once ``statements`` is exhausted (a generator may
        fill them as it goes).

        ``planned`` entries (see :meth:`plan_entries`) are appended as one batch; ``settled_revenue`` marks (platform, event) revenue reports as settled
        by this close. A closed period is never rewritten; on any error nothing is stored.

        Raises:
            LedgerFileError: ``planned`` was numbered before another append took its rows.
        """
        planned_values = planned.values if planned is not None else ()
        with self.tip.booking():
            reserved = self.tip.reserve(entries=0)
            if planned_values:
                self.tip.check_planned(planned.first_entry_id)
                reserved = replace(reserved, first_entry=planned.first_entry_id, entries=len(planned_values))
            with self.db.transaction():
                if planned_values:
                    self._append_planned(planned, reserved.batch_id, close)
                if settled_revenue:
                    self.db.insert("revenue_settlements", pa.table({
                        "platform_id": [platform for platform, _ in settled_revenue],
                        "event_id": [event for _, event in settled_revenue],
                        "close_period": [close.period] * len(settled_revenue),
                    }))
                snapshot = self.tip.snapshot(self.db)
                count = 0
                for chunk in _chunks(iter(statements), STATEMENT_CHUNK):
                    self.db.insert("statements", statements_table(chunk, close.closed_at))
                    count += len(chunk)
                self.db.con.execute(
                    f"INSERT INTO period_closes ({_CLOSE_COLUMNS}, lake_snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [close.period, close.closed_at, close.last_entry_id, close.chain_head, count,
                     close.root, close.book_hash, snapshot],
                )
                if commitment is not None:
                    self._store_commitment(close.period, commitment)
                if distributions:
                    record_distributions(self.db, distributions, close.closed_at)
            if planned_values:
                self.tip.advance(reserved)

    def _append_planned(self, planned: PlannedEntries, batch_id: int, close: CloseRecord) -> None:
        """Appends a close's period entries as one batch (inside the caller's transaction)."""
        self.db.insert("accruals", accruals_table(planned.values, batch_id, planned.first_entry_id))
        self.db.con.execute(
            "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
            [batch_id, close.closed_at, 0, len(planned.values), 0, 0, ""],
        )

    def _store_commitment(self, period: str, commitment: CloseCommitment) -> None:
        """Stores a close's cut-off and the heads of the streams it touched (inside the caller's transaction)."""
        cutoff = sorted(commitment.cutoff.items())
        if cutoff:
            self.db.insert("close_cutoffs", pa.table({
                "period": [period] * len(cutoff),
                "topic": [topic for (topic, _), _ in cutoff],
                "kafka_partition": pa.array([partition for (_, partition), _ in cutoff], pa.int32()),
                "next_offset": pa.array([offset for _, offset in cutoff], pa.int64()),
            }))
        touched = [commitment.heads[stream] for stream in commitment.touched]
        if touched:
            self.db.insert("close_streams", pa.table({
                "period": [period] * len(touched),
                "stream": [h.stream for h in touched],
                "entries": pa.array([h.entries for h in touched], pa.int64()),
                "head": [h.head for h in touched],
            }))
