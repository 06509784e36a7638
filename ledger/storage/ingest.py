"""Ingestion into the ledger file: the dedupe probes and the append of a batch with its offsets.

Guarantees:
  * A batch of events, its accruals, its quarantined records and its consumer offsets
    land in one transaction, so the ledger never holds rows without their offsets.
  * Every accrual is stored with its identity from the log (stream, position, line), so its
    digest (entry format 3, :mod:`ledger.core.chain`, computed from its fields where a close
    or verify needs it, never stored from schema 14 on) does not depend on batch boundaries
    or on which path booked it. ``entry_id`` numbers rows in
    this file's booking order (the native fast path's first within a batch): a local row
    number, never hashed, signed or compared between ledgers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import pyarrow as pa

from ledger.core import chain
from ledger.core.pricing import Accrual
from ledger.core.records import BatchResult, IngestBatch
from ledger.errors import EntryOriginError
from ledger.storage.arrow_rows import (TIMESTAMP, accruals_table, events_table, native_accruals_table,
                                       native_events_table, quarantine_table, revenue_table)
from ledger.storage.connection import ChainTip, Db, Reservation, now
from ledger.storage.unlicensed import unlicensed_table

ENTRY_KEY_SQL = ("CASE WHEN {a}.stream IS NULL THEN 'entry:' || {a}.entry_id"
                 " ELSE {a}.stream || '@' || {a}.position || '#' || {a}.line END")
"""An entry's key in SQL (``ledger.core.chain.entry_key``); an entry booked before format 3
has none from the log and is named by its local id, ``entry:<id>``."""


def entry_key_sql(alias: str) -> str:
    return ENTRY_KEY_SQL.format(a=alias)


class IngestRepository:
    """``usage_events``, ``accruals``, ``revenue_reports``, ``model_lineage``, ``quarantine`` and offsets."""

    def __init__(self, db: Db, tip: ChainTip):
        self.db = db
        self.tip = tip

    # -- probes --------------------------------------------------------------------------

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to read per (topic, partition), as committed with the ledger rows."""
        rows = self.db.rows("SELECT topic, kafka_partition, max(next_offset) FROM consumer_offsets GROUP BY ALL")
        return {(topic, partition): offset for topic, partition, offset in rows}

    def known_events(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Content hashes of the events among ``keys`` already in the ledger."""
        rows = self.db.rows_for_keys(keys, "SELECT u.platform_id, u.event_id, u.content_hash FROM usage_events u"
                                           " JOIN _probe_keys p USING (platform_id, event_id)")
        return {(p, e): h for p, e, h in rows}

    def booked_entries(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[tuple[str, Accrual], ...]]:
        """The entries (key, accrual) booked for each event among ``keys``, in line order."""
        fields = [name for name in chain.ENTRY_FIELDS if name != "reverses_entry_key"]
        rows = self.db.rows_for_keys(
            keys,
            f"SELECT {entry_key_sql('a')}, a.reverses_entry_key, a.reverses_entry_id,"
            f" {', '.join('a.' + name for name in fields)} FROM accruals a"
            " JOIN _probe_keys USING (platform_id, event_id) ORDER BY a.line, a.entry_id")
        found: dict[tuple[str, str], list[tuple[str, Accrual]]] = {}
        for key, reverses_key, reverses_id, *row in rows:
            values = dict(zip(fields, row))
            values["description"] = values["description"] or ""
            values["stream"] = values["stream"] or ""
            values["position"] = values["position"] or 0
            if reverses_key is None and reverses_id is not None:  # booked before format 3
                reverses_key = f"entry:{reverses_id}"
            values["reverses_entry_key"] = reverses_key
            found.setdefault((values["platform_id"], values["event_id"]), []).append((key, Accrual(**values)))
        return {key: tuple(entries) for key, entries in found.items()}

    def corrections_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """For each event among ``keys`` already corrected, the event id of its correction."""
        rows = self.db.rows_for_keys(
            keys,
            "SELECT DISTINCT o.platform_id, o.event_id, r.event_id FROM accruals o"
            " JOIN _probe_keys USING (platform_id, event_id)"
            f" JOIN accruals r ON r.reverses_entry_id = o.entry_id OR r.reverses_entry_key = {entry_key_sql('o')}")
        return {(p, e): c for p, e, c in rows}

    # -- append --------------------------------------------------------------------------

    def append_batch(self, batch: IngestBatch) -> BatchResult:
        """Appends a batch and its offsets in one transaction; all of it or none.

        Rows are numbered in this file's order (the native fast path's first, then the
        rest); an entry's digest depends on its fields alone, whatever its number.

        Raises:
            DuplicateEventError: an event is booked already or twice in the batch (nothing was
                appended; the storage's tip checks every batch, :meth:`ChainTip.check_unique_events`).
                From the fast path: the reference path, which probes the ledger, must build the batch.
            EntryOriginError: an accrual has no stream (nothing was appended).
            StaleBatchError: another writer booked one of the batch's partitions past where the
                batch starts (a lake; nothing was appended).
        """
        for accrual in batch.accruals:
            if not accrual.stream:
                raise EntryOriginError(
                    f"entry {accrual.platform_id}/{accrual.event_id} line {accrual.line} has no stream: every entry"
                    " is keyed by the record that produced it (consumers.batch.build_batch sets it)")
        native = batch.native
        native_accruals = native.accrual_count if native is not None else 0
        values = [tuple(getattr(a, name) for name in chain.ENTRY_FIELDS) for a in batch.accruals]
        at = now()
        with self.tip.booking(partitions=batch.starts):
            reserved = self.tip.reserve(entries=native_accruals + len(values), quarantined=len(batch.quarantined))
            self._commit(batch, reserved, values, at)
            self.tip.advance(reserved)
        return BatchResult(batch_id=reserved.batch_id, first_entry_id=reserved.first_entry,
                           last_entry_id=reserved.first_entry + reserved.entries - 1)

    def _commit(self, batch: IngestBatch, reserved: Reservation, values: list[tuple], at: datetime) -> None:
        """Writes a batch with the numbers reserved for it, in one transaction."""
        batch_id, first = reserved.batch_id, reserved.first_entry
        native = batch.native
        with self.db.transaction():
            self.tip.check_fence(self.db, batch.starts)
            native_events = native is not None and native.event_count
            if native_events:
                self.db.insert("usage_events", native_events_table(native, batch_id))
            if batch.events:
                self.db.insert("usage_events", events_table(batch.events, batch_id))
            if native_events or batch.events:
                self.tip.check_unique_events(self.db, batch_id, probed=not native_events)
            native_accruals = native.accrual_count if native is not None else 0
            if native_accruals:
                self.db.insert("accruals", native_accruals_table(native, first, batch_id))
            self._append_rows(batch, reserved, first + native_accruals, values, at)
            self.db.con.execute(
                "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                [batch_id, at, batch.event_count, native_accruals + len(values), len(batch.quarantined),
                 batch.duplicates, ""],
            )

    def _append_rows(self, batch: IngestBatch, reserved: Reservation, first_entry_id: int, values: list[tuple],
                     at: datetime) -> None:
        """Inserts the batch's Python-built rows other than its events, and its offsets (inside the caller's transaction)."""
        insert = self.db.insert
        batch_id = reserved.batch_id
        if values:
            insert("accruals", accruals_table(values, batch_id, first_entry_id))
        if batch.revenues:
            insert("revenue_reports", revenue_table(batch.revenues, batch_id))
        if batch.lineage:
            insert("model_lineage", pa.table({
                "platform_id": [m.platform_id for m in batch.lineage],
                "model_id": [m.model_id for m in batch.lineage],
                "base_model_id": [m.base_model_id for m in batch.lineage],
                "event_id": [m.event_id for m in batch.lineage],
                "occurred_at": pa.array([m.occurred_at for m in batch.lineage], TIMESTAMP),
                "batch_id": pa.array([batch_id] * len(batch.lineage), pa.int64()),
            }))
        if batch.unlicensed:
            insert("unlicensed_use", unlicensed_table(batch.unlicensed, batch_id))
        if batch.quarantined:
            insert("quarantine", quarantine_table(batch.quarantined, reserved.first_quarantine, batch_id, at))
        if batch.offsets:
            insert("consumer_offsets", pa.table({
                "batch_id": pa.array([batch_id] * len(batch.offsets), pa.int64()),
                "topic": [tp[0] for tp in batch.offsets],
                "kafka_partition": pa.array([tp[1] for tp in batch.offsets], pa.int32()),
                "next_offset": pa.array(list(batch.offsets.values()), pa.int64()),
            }))
