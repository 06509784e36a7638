"""Ingestion into the ledger file: the dedupe probes and the append of a batch with its offsets.

Guarantees:
  * A batch of events, its accruals, its quarantined records and its consumer offsets
    land in one transaction, so the ledger never holds rows without their offsets.
  * Accruals are numbered and hash-chained in entry order (see :mod:`ledger.core.chain`):
    the native fast path's first, then the rest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Sequence

import duckdb
import pyarrow as pa

from ledger.core import chain
from ledger.core.pricing import Accrual
from ledger.core.records import BatchResult, IngestBatch
from ledger.errors import DuplicateEventError
from ledger.storage.arrow_rows import (TIMESTAMP, accruals_table, events_table, native_accruals_table,
                                       native_events_table, quarantine_table, revenue_table)
from ledger.storage.connection import ChainTip, Db, now


class IngestRepository:
    """``usage_events``, ``accruals``, ``revenue_reports``, ``model_lineage``, ``quarantine`` and offsets."""

    def __init__(self, db: Db, tip: ChainTip):
        self.db = db
        self.tip = tip
        self._helper: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown()

    def _aside(self) -> ThreadPoolExecutor:
        """One helper thread for native work that overlaps a DuckDB statement."""
        if self._helper is None:
            self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-aside")
        return self._helper

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

    def booked_entries(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[tuple[int, Accrual], ...]]:
        """The entries (id, accrual) booked for each event among ``keys``, in entry order."""
        rows = self.db.rows_for_keys(keys, f"SELECT {', '.join(chain.ENTRY_FIELDS)} FROM accruals"
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
        rows = self.db.rows_for_keys(keys, "SELECT DISTINCT o.platform_id, o.event_id, r.event_id FROM accruals o"
                                           " JOIN _probe_keys USING (platform_id, event_id)"
                                           " JOIN accruals r ON r.reverses_entry_id = o.entry_id")
        return {(p, e): c for p, e, c in rows}

    # -- append --------------------------------------------------------------------------

    def append_batch(self, batch: IngestBatch) -> BatchResult:
        """Appends a batch and its offsets in one transaction; all of it or none.

        Entries are numbered and chained in order: the native fast path's first, then the rest.

        Raises:
            DuplicateEventError: a fast-path event is booked already (nothing was appended);
                the reference path, which probes the ledger, must build the batch.
        """
        tip = self.tip
        batch_id = tip.last_batch + 1
        first = tip.last_entry + 1
        native = batch.native
        native_accruals = native.accrual_count if native is not None else 0
        # The native chain runs (outside the GIL) while DuckDB appends the events.
        chained = self._aside().submit(native.chain, tip.head, first) if native_accruals else None
        python_first = first + native_accruals
        values = [
            (entry_id, *(getattr(a, name) for name in chain.ENTRY_FIELDS[1:]))
            for entry_id, a in zip(range(python_first, python_first + len(batch.accruals)), batch.accruals)
        ]
        at = now()
        try:
            with self.db.transaction():
                if native is not None and native.event_count:
                    self.db.insert("usage_events", native_events_table(native, batch_id))
                head = tip.head
                if chained is not None:
                    native_hashes, head = chained.result()
                    self.db.insert("accruals", native_accruals_table(native, first, native_hashes, batch_id))
                hashes = chain.chain_accruals(head, python_first, batch.accruals)
                head = hashes[-1] if hashes else head
                self._append_rows(batch, batch_id, values, hashes, at)
                self.db.con.execute(
                    "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [batch_id, at, batch.event_count, native_accruals + len(values), len(batch.quarantined),
                     batch.duplicates, head],
                )
        except duckdb.ConstraintException as exc:
            if native is None:
                raise
            raise DuplicateEventError(f"a fast-path event of batch {batch_id} is booked already: {exc}") from exc
        finally:
            if chained is not None and not chained.cancel():
                chained.exception()  # waits: the chain never runs on past its batch
        tip.advance(batch_id=batch_id, last_entry=first + native_accruals + len(values) - 1, head=head,
                    quarantined=len(batch.quarantined))
        return BatchResult(batch_id=batch_id, first_entry_id=first, last_entry_id=tip.last_entry, chain_head=head)

    def _append_rows(self, batch: IngestBatch, batch_id: int, values: list[tuple], hashes: list[str],
                     at: datetime) -> None:
        """Inserts the batch's Python-built rows and offsets (inside the caller's transaction)."""
        insert = self.db.insert
        if batch.events:
            insert("usage_events", events_table(batch.events, batch_id))
        if values:
            insert("accruals", accruals_table(values, hashes, batch_id))
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
        if batch.quarantined:
            insert("quarantine", quarantine_table(batch.quarantined, self.tip.last_quarantine + 1, batch_id, at))
        if batch.offsets:
            insert("consumer_offsets", pa.table({
                "batch_id": pa.array([batch_id] * len(batch.offsets), pa.int64()),
                "topic": [tp[0] for tp in batch.offsets],
                "kafka_partition": pa.array([tp[1] for tp in batch.offsets], pa.int32()),
                "next_offset": pa.array(list(batch.offsets.values()), pa.int64()),
            }))
