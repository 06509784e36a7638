"""Replaying quarantined records once their cause is fixed (a license added, say).

A replayed record goes through the same batch building as live traffic. What now
books is appended as a normal batch (without consumer offsets: those already moved
past it); what still fails stays quarantined with its first reason. A record is
replayed into the ledger at most once: once booked, its offset has an accepted event
and it no longer counts as open, and the event key forbids a second booking anyway.

Every entry a replay books is keyed by the original record (stream ``<topic>/<partition>``,
position = its offset), so it is the entry that booking on arrival would have made with
the same book. Records are replayed in (topic, partition, offset) order, never in the
order they happened to be quarantined.

Before every close (:func:`retry_before_close`) the records whose cause can go away by
itself are retried with the book as it stands: corrections that waited for their
original, and usage that waited for a license or a source. That is the rule that makes
"a license applied after usage was quarantined" and "a correction before its original"
resolve to the same entries, whatever the interleaving (docs/ingestion.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from consumers.batch import PendingCorrectionError, RawRecord, build_batch
from ledger.core.periods import check_period, period_end
from ledger.core.port import LedgerStore
from ledger.core.records import QuarantinedRecord
from ledger.core.signing import Signer
from ledger.core.usage import DEFAULT_LIMITS, UsageLimits
from ledger.errors import NoLicenseError, UnknownSourceError
from ledger.services.close import CloseOutcome, close_period
from schemas import Catalog, default_catalog
from schemas.registry import SchemaRegistry

RETRIED_BEFORE_CLOSE = (PendingCorrectionError.code, NoLicenseError.code, UnknownSourceError.code)
"""Codes of the quarantined records every close retries first: their cause (an original not
booked yet, a license or source not applied yet) can be gone by the close without anyone
replaying them. Other codes (undecodable, conflicts, implausible values) only a person fixes."""


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


NOTHING = ReplayOutcome(attempted=0, booked=0, duplicates=0, still_quarantined=())


def _raw(record: QuarantinedRecord) -> RawRecord:
    return RawRecord(topic=record.topic, partition=record.partition, offset=record.offset,
                     timestamp=record.record_timestamp, key=record.key, value=record.value, headers=record.headers)


def _in_log_order(rows: list[QuarantinedRecord]) -> list[QuarantinedRecord]:
    """One row per record, in (topic, partition, offset) order."""
    by_position = {(r.topic, r.partition, r.offset): r for r in sorted(rows, key=lambda r: r.quarantine_id)}
    return [by_position[position] for position in sorted(by_position)]


def _replay(ledger: LedgerStore, rows: list[QuarantinedRecord], catalog: Catalog | None,
            registry: SchemaRegistry | None, limits: UsageLimits) -> ReplayOutcome:
    """Builds ``rows`` as one batch with the ledger's current book and appends what books."""
    rows = _in_log_order(rows)
    if not rows:
        return NOTHING
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


def replay_quarantine(
    ledger: LedgerStore, ids: list[int] | None = None, *, error: str | None = None, catalog: Catalog | None = None,
    registry: SchemaRegistry | None = None, limits: UsageLimits = DEFAULT_LIMITS,
) -> ReplayOutcome:
    """Replays open quarantined records (all, the given ids, or those of one error).

    ``error`` is an error code (``no_license``); the class name stored beside it
    (``NoLicenseError``) is accepted too, as the CLI took class names before codes.
    Each record's ``occurred_at`` is bounded by its stored Kafka timestamp under
    ``limits`` (the consumer's), so a replay decides as ingestion did. Usage is priced
    with the book as it is now: replayed before a close, it is priced as that close's
    own retry would price it only if no license document is applied in between.
    """
    rows = [r for r in ledger.open_quarantine(ids) if error is None or error in (r.error_code, r.error_class)]
    return _replay(ledger, rows, catalog, registry, limits)


def replay_pending_corrections(
    ledger: LedgerStore, catalog: Catalog | None = None, registry: SchemaRegistry | None = None,
    limits: UsageLimits = DEFAULT_LIMITS,
) -> ReplayOutcome:
    """Applies corrections that were waiting for their original, if it has arrived."""
    return replay_quarantine(ledger, error=PendingCorrectionError.code, catalog=catalog, registry=registry,
                             limits=limits)


def retry_before_close(
    ledger: LedgerStore, catalog: Catalog | None = None, registry: SchemaRegistry | None = None,
    limits: UsageLimits = DEFAULT_LIMITS,
) -> ReplayOutcome:
    """Retries the open quarantined records of :data:`RETRIED_BEFORE_CLOSE` with the current book.

    Every close path calls this right before closing (the service, ``learnright close``,
    ``learnright rebuild``). It runs in rounds until a round books nothing, so a correction
    whose original books in one round applies in the next. Returns the records attempted
    (each counted once), those booked and duplicates over all rounds, and what is still
    quarantined after the last.
    """
    attempted: set[int] = set()
    booked = duplicates = 0
    still: tuple[StillQuarantined, ...] = ()
    while True:
        rows = [r for r in ledger.open_quarantine() if r.error_code in RETRIED_BEFORE_CLOSE]
        outcome = _replay(ledger, rows, catalog, registry, limits)
        attempted.update(r.quarantine_id for r in rows)
        booked += outcome.booked
        duplicates += outcome.duplicates
        still = outcome.still_quarantined
        if not outcome.booked:
            break
    return ReplayOutcome(attempted=len(attempted), booked=booked, duplicates=duplicates, still_quarantined=still)


def closes_now(ledger: LedgerStore, period: str, now: datetime) -> bool:
    """Whether closing ``period`` at ``now`` would close something (its checks are close_period's).

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``.
    """
    check_period(period)
    latest = ledger.latest_close()
    return (now >= period_end(period) and ledger.get_close(period) is None
            and (latest is None or latest.period < period))


def retry_and_close(
    ledger: LedgerStore, period: str, *, now: datetime, signer: Signer, catalog: Catalog | None = None,
    registry: SchemaRegistry | None = None, limits: UsageLimits = DEFAULT_LIMITS, memory_limit: str | None = None,
    workers: int | None = None,
) -> tuple[ReplayOutcome, CloseOutcome]:
    """Closes ``period`` as every close path does: :func:`retry_before_close`, then close_period
    (with ``memory_limit`` and ``workers``, ``close.memory_limit`` and ``close.workers`` of the settings).

    Nothing is retried when the close would not close anything (closed already), nor when
    close_period is about to refuse it (the month has not ended, a later one is closed).

    Raises:
        PeriodError: as :func:`ledger.services.close.close_period`.
    """
    retried = retry_before_close(ledger, catalog, registry, limits) if closes_now(ledger, period, now) else NOTHING
    return retried, close_period(ledger, period, now=now, signer=signer, memory_limit=memory_limit, workers=workers)
