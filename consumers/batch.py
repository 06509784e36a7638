"""Turning a batch of Kafka records into one ledger batch: decode, validate, dedupe, price.

Pure apart from ``known_events``, the ledger lookup passed in. Every record ends up
in exactly one place: accepted (an event row), a duplicate (counted, nothing added)
or quarantined (with its bytes and the reason). accepted + duplicates + quarantined
= records in, always.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Mapping, Protocol, Sequence

from ground.errors import LearnrightError, TerminalError, TransientError, error_code
from ground.settings import ConsumerSettings
from ledger.core.chain import stream_of
from ledger.core.corrections import CorrectionError, apply_correction
from ledger.core.licenses import LicenseBook
from ledger.core.pricing import Accrual, Priced, price_consented
from ledger.core.unlicensed import UnlicensedUse
from ledger.core.records import EventRow, IngestBatch, ModelLineage, QuarantineRow
from ledger.core.periods import period_of
from ledger.core.usage import (DEFAULT_LIMITS, InferenceUsage, RevenueReport, TrainingUsage, UsageCorrection,
                               UsageEvent, UsageLimits, parse_event)
from schemas import Catalog, DecodeError
from schemas.wire import decode_canonical
from schemas.registry import SchemaRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class RawRecord:
    """One Kafka record as read, before decoding."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    """The record's Kafka timestamp, milliseconds since 1970 (-1: none): what ``occurred_at`` is
    bounded by. On a ``LogAppendTime`` topic the broker's append time, else the producer's."""
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class ConflictError(TerminalError):
    """The same (platform_id, event_id) arrived with different content."""

    code = "event_conflict"


class PendingCorrectionError(TransientError):
    """A correction arrived before the event it corrects; it applies when that arrives."""

    code = "correction_pending"


class LedgerView(Protocol):
    """What batch building reads from the ledger: a part of :class:`ledger.core.port.LedgerStore`."""

    def known_events(self, keys: Sequence[tuple[str, str]]) -> Mapping[tuple[str, str], str]: ...

    def booked_entries(self, keys: Sequence[tuple[str, str]]) -> Mapping[tuple[str, str], tuple]: ...

    def corrections_of(self, keys: Sequence[tuple[str, str]]) -> Mapping[tuple[str, str], str]: ...


CONTENT_HASH_HEX = 32
"""Hex characters of an event's content hash kept: the first 128 bits of its SHA-256.

The hash only tells a retry of a booked event from a conflicting one under the same
(platform, event id), so 128 bits (a UUID's width) leave no practical chance of a
conflict passing for a retry, and the ledger stores about 17 bytes an event instead
of 34 for the full digest (issue 18). Rows booked before kept all 64 characters; they
are compared by this prefix (:func:`same_content`).
"""


def content_hash(name: str, canonical_body: bytes) -> str:
    """Hash of an event's content: its record name and its encoding in the latest schema.

    Independent of the framing and schema version that carried it, so a retry of the
    same event from an upgraded producer is still recognised as the same event. The
    native fast path writes the same characters (``native/src/ingest.rs``).
    """
    return hashlib.sha256(name.encode() + b"\x00" + canonical_body).hexdigest()[:CONTENT_HASH_HEX]


def same_content(stored: str, digest: str) -> bool:
    """Whether a stored content hash (full, from before :data:`CONTENT_HASH_HEX`, or
    not) is the one of an event whose hash is ``digest``."""
    return stored[:CONTENT_HASH_HEX] == digest[:CONTENT_HASH_HEX]


NO_TIMESTAMP = -1
"""Kafka's timestamp of a record that has none (message format v0)."""


def kafka_timestamp(value: int | None) -> int:
    """A record timestamp as kafka-python gives it, as the log holds it: a 64-bit long.

    kafka-python adds a batch's first timestamp and a record's delta without Java's
    64-bit wrap-around; this wraps as Java does (and as the native reader does), and
    reads a missing timestamp as :data:`NO_TIMESTAMP`.
    """
    if value is None:
        return NO_TIMESTAMP
    return (value + 2**63) % 2**64 - 2**63


def usage_limits(settings: ConsumerSettings) -> UsageLimits:
    """The bounds on plausible usage the ledger applies, from the ``consumer`` settings."""
    return UsageLimits(max_future_s=settings.max_future_s, max_attributions=settings.max_attributions)


def _quarantine_row(raw: RawRecord, error: Exception, event: object | None = None) -> QuarantineRow:
    return QuarantineRow(
        topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key, value=raw.value,
        headers=raw.headers, error_code=error_code(error), error_class=type(error).__name__, reason=str(error),
        platform_id=getattr(event, "platform_id", None), event_id=getattr(event, "event_id", None),
        record_timestamp=raw.timestamp,
    )


def _where(raw: RawRecord) -> str:
    return f"{raw.topic}[{raw.partition}]@{raw.offset}"


def _next_offsets(records: Sequence[RawRecord]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for raw in records:
        offsets[(raw.topic, raw.partition)] = max(offsets.get((raw.topic, raw.partition), 0), raw.offset + 1)
    return offsets


def _parse_records(
    records: Sequence[RawRecord], catalog: Catalog, registry: "SchemaRegistry | None", limits: UsageLimits,
    quarantined: list[QuarantineRow],
) -> list[tuple[RawRecord, UsageEvent, str]]:
    """Decodes and validates ``records``: (record, event, content hash) of the valid ones; the rest quarantined."""
    candidates: list[tuple[RawRecord, UsageEvent, str]] = []
    for raw in records:
        try:
            decoded = decode_canonical(raw.value or b"", catalog, registry)
        except DecodeError as exc:
            quarantined.append(_quarantine_row(raw, type(exc)(f"{exc} at {_where(raw)}")))
            continue
        event, problems = parse_event(decoded.name, decoded.record, limits=limits, reported_ms=raw.timestamp)
        if problems:
            quarantined.append(_quarantine_row(raw, problems[0].at(_where(raw)), None))
            continue
        candidates.append((raw, event, content_hash(decoded.name, decoded.canonical_body)))
    return candidates


def _priced(raw: RawRecord, event: UsageEvent, book: LicenseBook, booked: Mapping[tuple[str, str], tuple],
            corrected: dict[tuple[str, str], str], known: Mapping[tuple[str, str], str]) -> Priced:
    """The accruals (and unlicensed uses) of one new event; a correction is recorded in ``corrected``.

    Raises:
        LearnrightError: the event cannot be priced or the correction applied (it is quarantined).
    """
    if isinstance(event, (TrainingUsage, InferenceUsage)):
        return price_consented(event, book)
    if isinstance(event, RevenueReport):
        return Priced()
    target = (event.platform_id, event.corrects_event_id)
    if target in corrected:
        raise CorrectionError(
            f"correction {event.event_id}: event {event.corrects_event_id} was already corrected by"
            f" {corrected[target]} at {_where(raw)}")
    if target not in booked and target in known:
        raise CorrectionError(
            f"correction {event.event_id}: event {event.corrects_event_id} of platform {event.platform_id} is"
            f" booked without priced entries (unlicensed use, or a revenue report): there is nothing to correct,"
            f" at {_where(raw)}")
    if target not in booked:
        raise PendingCorrectionError(
            f"correction {event.event_id} waits for event {event.corrects_event_id} of platform"
            f" {event.platform_id}, not booked yet, at {_where(raw)}")
    priced = apply_correction(event, booked[target], book)
    corrected[target] = event.event_id
    return Priced(accruals=priced)


def _event_row(raw: RawRecord, event: UsageEvent, digest: str) -> EventRow:
    return EventRow(
        platform_id=event.platform_id, event_id=event.event_id, event_type=type(event).__name__,
        content_hash=digest, model_id=getattr(event, "model_id", None), occurred_at=event.occurred_at,
        period=period_of(event.occurred_at), topic=raw.topic, partition=raw.partition, offset=raw.offset,
    )


def build_batch(
    records: Sequence[RawRecord],
    book: LicenseBook,
    ledger: LedgerView,
    catalog: Catalog,
    registry: "SchemaRegistry | None" = None,
    limits: UsageLimits = DEFAULT_LIMITS,
) -> IngestBatch:
    """Decodes, validates, dedupes and prices ``records`` into one ledger batch.

    ``occurred_at`` is bounded by each record's own Kafka timestamp (``limits``), never by
    the clock, so the same records build the same batch whenever they are read.
    A correction whose original is not booked yet is quarantined as pending
    (:class:`PendingCorrectionError`); replaying it after the original arrives applies it.
    Every accrual is keyed by its record (stream ``<topic>/<partition>``, position = offset),
    so a record replayed from quarantine books the same entries as if booked on arrival.
    A use of a source whose consent ended is booked as unlicensed use, keyed the same way.
    """
    quarantined: list[QuarantineRow] = []
    candidates = _parse_records(records, catalog, registry, limits, quarantined)
    targets = [(e.platform_id, e.corrects_event_id) for _, e, _ in candidates if isinstance(e, UsageCorrection)]
    # One probe for the batch's events and the events its corrections name (booked before this batch).
    known = ledger.known_events(list(dict.fromkeys([(e.platform_id, e.event_id) for _, e, _ in candidates] + targets)))
    booked = ledger.booked_entries(targets)
    corrected = dict(ledger.corrections_of(targets))
    seen: dict[tuple[str, str], str] = dict(known)
    events: list[EventRow] = []
    accruals: list[Accrual] = []
    unlicensed: list[UnlicensedUse] = []
    revenues: list[tuple[RevenueReport, int]] = []
    lineage: list[ModelLineage] = []
    duplicates = 0
    for raw, event, digest in candidates:
        key = (event.platform_id, event.event_id)
        if key in seen:
            if same_content(seen[key], digest):
                duplicates += 1
            else:
                quarantined.append(_quarantine_row(raw, ConflictError(
                    f"event {event.event_id} of platform {event.platform_id} was already booked with other"
                    f" content (hash {seen[key][:12]}, now {digest[:12]}) at {_where(raw)}"), event))
            continue
        try:
            priced = _priced(raw, event, book, booked, corrected, known)
        except LearnrightError as exc:
            quarantined.append(_quarantine_row(raw, exc, event))
            continue
        seen[key] = digest
        stream = stream_of(raw.topic, raw.partition)
        accruals.extend(replace(accrual, stream=stream, position=raw.offset) for accrual in priced.accruals)
        unlicensed.extend(replace(use, stream=stream, position=raw.offset) for use in priced.unlicensed)
        if isinstance(event, RevenueReport):
            revenues.append((event, raw.offset))
        if isinstance(event, TrainingUsage) and event.base_model_id:
            lineage.append(ModelLineage(platform_id=event.platform_id, model_id=event.model_id,
                                        base_model_id=event.base_model_id, event_id=event.event_id,
                                        occurred_at=event.occurred_at))
        events.append(_event_row(raw, event, digest))
    return IngestBatch(
        events=tuple(events), accruals=tuple(accruals), revenues=tuple(revenues),
        quarantined=tuple(quarantined), offsets=_next_offsets(records), duplicates=duplicates,
        lineage=tuple(lineage), unlicensed=tuple(unlicensed),
    )
