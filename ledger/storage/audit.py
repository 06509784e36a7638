"""Reads for verification and monitoring: the entries as stored, their recorded ends, the totals.

Nothing here trusts a stored hash; :mod:`ledger.services.verify` recomputes what the
entries give (:meth:`AuditRepository.entry_scan`, :meth:`AuditRepository.legacy_entries`)
and compares.

Guarantees:
  * :meth:`AuditRepository.entry_scan` reads every entry column-wise in Arrow batches of
    :data:`CHUNK` rows (the row numbers always; the fields only of entries with a stored
    digest), so its memory does not grow with the number of entries; digests are computed as
    a close computes them (:mod:`ledger.storage.entry_digests`: natively, or by
    ``chain.digest`` without the extension), and what it finds does not depend on which.
  * What it reports is what a walk through the entries in row order reports: the first
    row number out of sequence, the lowest-numbered entry whose stored digest is not its
    fields'.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ledger.core import chain
from ledger.core.records import ChainAnchor, ChainEntry, ChangedEntry, CurrencyAmount, EntryScan, LedgerTotals, RowBreak
from ledger.storage.connection import Db, read_anchor
from ledger.storage.covered import COVERED
from ledger.storage.entry_digests import entry_digests

CHUNK = 65_536
"""Entries read at a time while they are scanned."""

_NUMBERS = "SELECT entry_id FROM accruals"

_DIGESTED = (f"SELECT entry_id, {', '.join(chain.ENTRY_FIELDS)}, entry_hash FROM accruals"
             " WHERE entry_hash IS NOT NULL AND stream IS NOT NULL")
"""Entries of format 3 booked before schema 14, with the digest stored beside them."""

COVERED_TOTALS_SQL = (f"SELECT holder_id, currency, sum(amount) FROM accruals WHERE {COVERED}"
                      " GROUP BY holder_id, currency ORDER BY holder_id, currency")
"""The amounts of the accruals a close covers (:data:`ledger.storage.covered.COVERED`) summed per holder and
currency, exactly (DECIMAL): what its statement lines (:data:`ledger.storage.closes.STATEMENT_LINES_SQL`) add up
to, since each line is a sum of the same accruals, without grouping them into lines first."""


class _Numbering:
    """Follows row numbers batch by batch: how many, the last, the first jump and the first repeat."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0
        self.jump: RowBreak | None = None
        self.repeat: RowBreak | None = None

    def take(self, ids: pa.Array) -> None:
        if not len(ids):
            return
        before = pa.concat_arrays([pa.array([self.last], ids.type), ids.slice(0, len(ids) - 1)])
        if self.jump is None:
            self.jump = _first_break(before, ids, pc.not_equal(ids, pc.add(before, 1)))
        if self.repeat is None:
            self.repeat = _first_break(before, ids, pc.less_equal(ids, before))
        self.count += len(ids)
        self.last = ids[-1].as_py()


def _first_break(before: pa.Array, ids: pa.Array, where: pa.Array) -> RowBreak | None:
    at = pc.index(where, True).as_py()
    return None if at < 0 else RowBreak(previous=before[at].as_py(), entry_id=ids[at].as_py())


def _numbering(batches: Iterable[pa.RecordBatch]) -> _Numbering:
    numbering = _Numbering()
    for batch in batches:
        numbering.take(batch.column(0))
    return numbering


class AuditRepository:
    def __init__(self, db: Db):
        self.db = db

    def entry_scan(self) -> EntryScan:
        """Row numbers and stored digests of every entry, read column-wise (:class:`EntryScan`).

        Row numbers are read as stored first (DuckDB keeps insertion order, and a ledger
        numbers its rows as it appends them): no sort of a column with a row per entry; read
        sorted only when they do not rise as stored. The lowest-numbered changed entry does
        not depend on the order rows come in.
        """
        cursor = self.db.cursor()
        try:
            numbering = _numbering(cursor.execute(_NUMBERS).to_arrow_reader(CHUNK))
            if numbering.repeat is not None:  # not rising as stored: a repeat, or rows out of order
                numbering = _numbering(cursor.execute(_NUMBERS + " ORDER BY entry_id").to_arrow_reader(CHUNK))
            changed: ChangedEntry | None = None
            for batch in cursor.execute(_DIGESTED).to_arrow_reader(CHUNK):
                found = _first_changed(batch)
                if found is not None and (changed is None or found.entry_id < changed.entry_id):
                    changed = found
            return EntryScan(entries=numbering.count, last_entry_id=numbering.last, first_jump=numbering.jump,
                             first_repeat=numbering.repeat, first_changed=changed)
        finally:
            cursor.close()

    def legacy_entries(self) -> Iterator[ChainEntry]:
        """Every entry booked before schema 7 (format 2: no stream), in row order, read in chunks."""
        cursor = self.db.cursor()
        try:
            cursor.execute(f"SELECT {', '.join(chain.ENTRY_FIELDS_V2)}, entry_hash FROM accruals"
                           " WHERE stream IS NULL ORDER BY entry_id")
            while rows := cursor.fetchmany(CHUNK):
                for row in rows:
                    values, entry_hash = row[:-1], row[-1]
                    yield ChainEntry(entry_id=values[0], format=chain.CHAIN_FORMAT_V2, values=values,
                                     entry_hash=entry_hash, key=f"entry:{values[0]}")
        finally:
            cursor.close()

    def covered_totals(self, period: str, watermark: int, previous_watermark: int) -> dict[tuple[str, str], Decimal]:
        """The amount of the statement lines a close covers, per (holder, currency), in increasing (holder, currency)."""
        rows = self.db.rows(COVERED_TOTALS_SQL, [watermark, period, period, previous_watermark])
        return {(holder, currency): amount for holder, currency, amount in rows}

    def chain_anchors(self) -> list[ChainAnchor]:
        """The chain's end as the last batch with entries records it (the file's tip adds its anchor file)."""
        anchors = [
            ChainAnchor(where=f"batch {batch_id}", last_entry_id=entry_id, chain_head=head)
            for batch_id, head, entry_id in self.db.rows(
                "SELECT batch_id, chain_head, (SELECT max(entry_id) FROM accruals a WHERE a.batch_id <= b.batch_id)"
                " FROM ingest_batches b ORDER BY batch_id DESC LIMIT 1"
            )
            if entry_id is not None
        ]
        return anchors

    def totals(self) -> LedgerTotals:
        """Accrued amounts per currency (every entry) and the time of the latest close."""
        accrued = self.db.rows("SELECT currency, sum(amount) FROM accruals GROUP BY ALL ORDER BY ALL")
        return LedgerTotals(
            accrued=tuple(CurrencyAmount(currency=currency, amount=amount) for currency, amount in accrued),
            last_closed_at=self.db.value("SELECT max(closed_at) FROM period_closes"),
        )


def _first_changed(batch: pa.RecordBatch) -> ChangedEntry | None:
    """The lowest-numbered entry of a batch (entry_id, ENTRY_FIELDS, entry_hash) whose stored digest is not its fields'."""
    fields = pa.RecordBatch.from_arrays(batch.columns[1:-1], names=list(chain.ENTRY_FIELDS))
    recomputed = pa.array(entry_digests(fields), pa.string())
    stored = batch.column(batch.num_columns - 1).cast(pa.string())
    differs = pc.not_equal(recomputed, stored)
    if not pc.any(differs).as_py():
        return None
    ids = batch.column(0)
    at = min((row for row, different in enumerate(differs.to_pylist()) if different), key=lambda row: ids[row].as_py())
    stream, position, line = (batch.column(index)[at].as_py() for index in (1, 2, 3))
    return ChangedEntry(entry_id=ids[at].as_py(), key=chain.entry_key(stream, position, line),
                        stored=stored[at].as_py(), recomputed=recomputed[at].as_py())
