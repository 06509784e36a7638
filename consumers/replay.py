"""Replaying quarantined records once their cause is fixed (a license added, say).

A replayed record goes through the same batch building as live traffic. What now
books is appended as a normal batch (without consumer offsets: those already moved
past it); what still fails stays quarantined with its first reason. A record is
replayed into the ledger at most once: once booked, its offset has an accepted event
and it no longer counts as open, and the event key forbids a second booking anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consumers.batch import PendingCorrectionError, RawRecord, build_batch
from ledger.core.port import LedgerStore
from ledger.core.records import QuarantinedRecord
from ledger.core.usage import DEFAULT_LIMITS, UsageLimits
from schemas import Catalog, default_catalog
from schemas.registry import SchemaRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class StillQuarantined:
    """A replayed record that failed again, with the error of this attempt."""

    quarantine_id: int
    error_code: str
    error_class: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayOutcome:
    attempted: int
    booked: int
    duplicates: int
    still_quarantined: tuple[StillQuarantined, ...]


def _raw(record: QuarantinedRecord) -> RawRecord:
    return RawRecord(topic=record.topic, partition=record.partition, offset=record.offset,
                     timestamp=record.record_timestamp, key=record.key, value=record.value, headers=record.headers)


def replay_quarantine(
    ledger: LedgerStore, ids: list[int] | None = None, *, error: str | None = None, catalog: Catalog | None = None,
    registry: SchemaRegistry | None = None, limits: UsageLimits = DEFAULT_LIMITS,
) -> ReplayOutcome:
    """Replays open quarantined records (all, the given ids, or those of one error).

    ``error`` is an error code (``no_license``); the class name stored beside it
    (``NoLicenseError``) is accepted too, as the CLI took class names before codes.
    Each record's ``occurred_at`` is bounded by its stored Kafka timestamp under
    ``limits`` (the consumer's), so a replay decides as ingestion did.
    """
    rows = [r for r in ledger.open_quarantine(ids) if error is None or error in (r.error_code, r.error_class)]
    if not rows:
        return ReplayOutcome(attempted=0, booked=0, duplicates=0, still_quarantined=())
    by_position = {(r.topic, r.partition, r.offset): r.quarantine_id for r in rows}
    batch = build_batch([_raw(r) for r in rows], ledger.load_book(), ledger, catalog or default_catalog(), registry,
                        limits)
    still = tuple(
        StillQuarantined(quarantine_id=by_position[(q.topic, q.partition, q.offset)], error_code=q.error_code,
                         error_class=q.error_class, reason=q.reason)
        for q in batch.quarantined
    )
    if batch.events:
        ledger.append_batch(replace(batch, quarantined=(), offsets={}))
    return ReplayOutcome(attempted=len(rows), booked=len(batch.events), duplicates=batch.duplicates,
                         still_quarantined=still)


def replay_pending_corrections(
    ledger: LedgerStore, catalog: Catalog | None = None, registry: SchemaRegistry | None = None,
    limits: UsageLimits = DEFAULT_LIMITS,
) -> ReplayOutcome:
    """Applies corrections that were waiting for their original, if it has arrived."""
    return replay_quarantine(ledger, error=PendingCorrectionError.code, catalog=catalog, registry=registry,
                             limits=limits)
