"""Replaying quarantined records once their cause is fixed (a license added, say).

A replayed record goes through the same batch building as live traffic. What now
books is appended as a normal batch (without consumer offsets: those already moved
past it); what still fails stays quarantined with its first reason. A record is
replayed into the ledger at most once: once booked, its offset has an accepted event
and it no longer counts as open, and the event key forbids a second booking anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from consumers.batch import PendingCorrectionError, RawRecord, build_batch
from ledger.storage.store import Ledger
from schemas import Catalog, default_catalog
from schemas.registry import SchemaRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayOutcome:
    attempted: int
    booked: int
    duplicates: int
    still_quarantined: tuple[tuple[int, str, str], ...]


def _raw(row: tuple) -> RawRecord:
    _qid, topic, partition, offset, key, value, headers, *_ = row
    return RawRecord(
        topic=topic, partition=partition, offset=offset, key=key, value=value,
        headers=tuple((k, bytes.fromhex(v)) for k, v in json.loads(headers).items()),
    )


def replay_quarantine(
    ledger: Ledger, ids: list[int] | None = None, *, error_class: str | None = None, catalog: Catalog | None = None,
    registry: SchemaRegistry | None = None,
) -> ReplayOutcome:
    """Replays open quarantined records (all, the given ids, or one error class)."""
    rows = [r for r in ledger.open_quarantine(ids) if error_class is None or r[7] == error_class]
    if not rows:
        return ReplayOutcome(attempted=0, booked=0, duplicates=0, still_quarantined=())
    by_position = {(r[1], r[2], r[3]): r[0] for r in rows}
    batch = build_batch([_raw(r) for r in rows], ledger.load_book(), ledger, catalog or default_catalog(), registry)
    still = tuple((by_position[(q.topic, q.partition, q.offset)], q.error_class, q.reason) for q in batch.quarantined)
    if batch.events:
        ledger.append_batch(replace(batch, quarantined=(), offsets={}))
    return ReplayOutcome(attempted=len(rows), booked=len(batch.events), duplicates=batch.duplicates,
                         still_quarantined=still)


def replay_pending_corrections(
    ledger: Ledger, catalog: Catalog | None = None, registry: SchemaRegistry | None = None
) -> ReplayOutcome:
    """Applies corrections that were waiting for their original, if it has arrived."""
    return replay_quarantine(ledger, error_class=PendingCorrectionError.__name__, catalog=catalog, registry=registry)
