"""The native fast path of ingestion, and how it joins kafka-python and the reference path.

kafka-python fetches (group membership, fetch sessions, positions) exactly as before;
only the unpacking of a fetch changes. :func:`install` gives the consumer's fetcher a
record reader that hands each fetch over whole (lz4 batches unpacked), as one :class:`FetchBlock`,
instead of one Python object per record. The native module (``native/``, Rust) then
decodes, validates, prices and hashes the common case with the GIL released.

Guarantees:
  * The native path books a record only when it is certain: the latest TrainingUsage or
    InferenceUsage schema, single-object encoded, valid and within the usage limits
    (``occurred_at`` bounded by the record's timestamp, no source twice, at most
    :data:`NATIVE_MAX_ATTRIBUTIONS` attributions), priced by a license in force, without
    fine-tune lineage, of a source whose consent cannot end (no ``effective_to``, no
    revocation). Every other record goes through :func:`build_batch` (the reference
    path), which books, books as unlicensed use or quarantines it with its exact reason.
  * The result equals the reference path's for the same records (tests compare them),
    apart from entry order within a batch: fast-path accruals come first.
  * When two records of a batch share an event key, or a fast-path event turns out to
    be booked already, the whole batch is rebuilt by the reference path, which probes
    the ledger and orders duplicates and conflicts by offset.
  * Without the native module, or with schemas it was not written for, everything goes
    through the reference path (slower, same result), and a warning says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Iterable, Sequence

from kafka.consumer.fetcher import Fetcher, IsolationLevel

from consumers.batch import LedgerView, RawRecord, build_batch
from ledger.core.chain import ENTRY_FORMAT, utc_micros
from ledger.core.licenses import ANY_PLATFORM, LicenseBook, LicenseVersion
from ledger.core.money import ACCRUAL_SCALE, LEDGER_LIMIT, WIDE
from ledger.core.records import IngestBatch
from ledger.core.usage import DEFAULT_LIMITS, UsageLimits
from schemas import Catalog

if TYPE_CHECKING:
    from kafka import KafkaConsumer

    from schemas.registry import SchemaRegistry

try:
    import learnright_native as native
except ImportError:  # pragma: no cover - `make setup` builds it; tests require it
    native = None

log = logging.getLogger(__name__)

# The schemas the native reader was written for (fingerprints of their canonical forms).
# A new latest version turns the fast path off for that record until the reader follows.
NATIVE_SCHEMAS = {"TrainingUsage": "353f461750b3e56f", "InferenceUsage": "738678647aea6c19"}

NATIVE_MAX_ATTRIBUTIONS = 64
"""Attributions of the longest answer the native path books; it finds a repeated source by
comparing pairs, so longer answers (rare) are left to the reference path."""


@dataclass(frozen=True, slots=True)
class FetchBlock:
    """One fetched partition's record batches, unread: the records at or after ``min_offset``."""

    topic: str
    partition: int
    min_offset: int
    data: bytes
    count: int  # records at or after min_offset
    offset: int  # the last record's offset; kafka-python skips items whose offset is below its position

    def records(self) -> list[RawRecord]:
        """The block's records one by one, for the reference path."""
        return [
            RawRecord(topic=self.topic, partition=self.partition, offset=offset, timestamp=timestamp, key=key,
                      value=value, headers=tuple(headers))
            for offset, timestamp, key, value, headers in native.fetch_records(self.data, self.min_offset)
        ]


class BlockPartitionRecords(Fetcher.PartitionRecords):
    """kafka-python's per-partition record reader, handing over fetches whole.

    A fetch's lz4-compressed batches (the SDK's codec) are unpacked natively first, each
    compressed batch's CRC checked. A fetch the native scanner does
    not take (another codec, transactional or control batches, an older message format, a
    failed CRC, read_committed isolation) is read by kafka-python's own code, record by
    record, so its errors and skips stay kafka-python's.
    """

    def _unpack_records(self, tp, records, key_deserializer, value_deserializer):
        data = records._buffer
        data = data if isinstance(data, bytes) else bytes(data)
        scan = None
        if self.isolation_level == IsolationLevel.READ_UNCOMMITTED and key_deserializer is None and value_deserializer is None:
            plain = native.plain_fetch(data, self.check_crcs)  # lz4 batches (the SDK's) unpacked in one pass
            data = data if plain is None else plain
            scan = native.scan_fetch(data, self.fetch_offset, self.check_crcs)
        if scan is None:
            yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
            return
        next_offset, count, size, epoch = scan
        self.leader_epoch = epoch
        self.records_read += count
        self.bytes_read += size
        self.next_fetch_offset = next_offset
        if count:
            yield FetchBlock(tp.topic, tp.partition, self.fetch_offset, data, count, next_offset - 1)
        self.drain()


def install(consumer: "KafkaConsumer") -> bool:
    """Makes ``consumer`` hand over fetches as :class:`FetchBlock`; False when it cannot."""
    fetcher = getattr(consumer, "_fetcher", None)
    if native is None or fetcher is None or not hasattr(fetcher, "PartitionRecords"):
        log.warning("native fast path unavailable (%s); ingesting through the reference path",
                    "learnright_native is not built" if native is None else "kafka-python's fetcher changed")
        return False
    if getattr(native, "ENTRY_FORMAT", None) != ENTRY_FORMAT:
        log.warning("native fast path unavailable: learnright_native writes entry format %s, the ledger format %s"
                    " (a stale build; run make setup); ingesting through the reference path",
                    getattr(native, "ENTRY_FORMAT", "2 or older"), ENTRY_FORMAT)
        return False
    fetcher.PartitionRecords = BlockPartitionRecords
    return True


MAX_I64 = 2**63 - 1  # what the native pricer's `per` holds


def _scaled(value: Decimal, places: int) -> int | None:
    """``value`` as an unscaled integer at ``places`` decimals; None unless exact and within the ledger's limit."""
    if abs(value) > LEDGER_LIMIT:
        return None
    scaled = value.scaleb(places, context=WIDE)
    return int(scaled) if scaled == scaled.to_integral_value(context=WIDE) else None


def _version_spec(version: LicenseVersion) -> tuple | None:
    """A license version as the native pricer reads it; None leaves its pricing to Python."""
    training = None
    if version.training is not None:
        terms = version.training
        rate, unit_price = _scaled(terms.rate, ACCRUAL_SCALE), _scaled(terms.unit_price, ACCRUAL_SCALE)
        if rate is None or unit_price is None or not 0 < terms.per <= MAX_I64:
            return None
        training = (terms.unit, rate, terms.per, unit_price)
    inference = None
    if version.inference is not None:
        inference = _scaled(version.inference.rate, 6)
        if inference is None:
            return None
    return (version.license_id, version.version, version.currency, training, inference)


def compile_pricer(book: LicenseBook, catalog: Catalog, limits: UsageLimits = DEFAULT_LIMITS) -> "native.Pricer | None":
    """The native pricer of ``book`` under ``limits``, or None when the fast path cannot serve these schemas."""
    if native is None:
        return None
    latest = {name: catalog.latest(name) for name in NATIVE_SCHEMAS}
    stale = [f"{name} v{v.version}" for name, v in latest.items() if v.fingerprint.hex() != NATIVE_SCHEMAS[name]]
    if stale:
        log.warning("native fast path off: it reads other versions than the latest %s", ", ".join(stale))
        return None
    # A source whose consent can end (effective_to, a revocation) is left to Python, which books
    # a use after the end as unlicensed use.
    ending = {v.source_id for v in book.versions if v.effective_to is not None} | {
        r.source_id for r in book.revocations}
    index = [
        (source_id, platform_id, [(utc_micros(start), None if source_id in ending else _version_spec(v))
                                  for start, v in zip(starts, versions)])
        for (source_id, platform_id), (starts, versions) in book.in_force_index().items()
    ]
    return native.Pricer(
        training_fingerprint=latest["TrainingUsage"].fingerprint,
        inference_fingerprint=latest["InferenceUsage"].fingerprint,
        training_name=latest["TrainingUsage"].name,
        inference_name=latest["InferenceUsage"].name,
        holders={source_id: source.holder_id for source_id, source in book.sources.items()},
        index=index,
        any_platform=ANY_PLATFORM,
        # occurred_at (years 1-9999) is < 3e11 s after any timestamp >= 0: a clamped bound decides alike.
        max_future_s=min(limits.max_future_s, 10**12),
        max_attributions=min(limits.max_attributions, NATIVE_MAX_ATTRIBUTIONS),
    )


def _records_of(items: Iterable[RawRecord | FetchBlock]) -> list[RawRecord]:
    records: list[RawRecord] = []
    for item in items:
        records.extend(item.records() if isinstance(item, FetchBlock) else (item,))
    return records


class BatchBuilder:
    """Builds ledger batches: the native fast path where it can, the reference path for the rest."""

    def __init__(self, catalog: Catalog, registry: "SchemaRegistry | None" = None,
                 limits: UsageLimits = DEFAULT_LIMITS):
        self.catalog = catalog
        self.registry = registry
        self.limits = limits
        self._pricer: tuple[LicenseBook, object] | None = None

    def pricer(self, book: LicenseBook):
        if self._pricer is None or self._pricer[0] is not book:
            self._pricer = (book, compile_pricer(book, self.catalog, self.limits))
        return self._pricer[1]

    @staticmethod
    def _rest(items: Sequence[RawRecord | FetchBlock], rows) -> list[RawRecord]:
        """The records the fast path left to Python, in poll order (block by block, by offset)."""
        left: dict[int, list[RawRecord]] = {}
        for block, topic, partition, offset, timestamp, key, value, headers in rows.fallback():
            left.setdefault(block, []).append(RawRecord(topic=topic, partition=partition, offset=offset,
                                                        timestamp=timestamp, key=key, value=value,
                                                        headers=tuple(headers)))
        rest: list[RawRecord] = []
        block = 0
        for item in items:
            if isinstance(item, FetchBlock):
                rest.extend(left.get(block, ()))
                block += 1
            else:
                rest.append(item)
        return rest

    def reference(self, items: Sequence[RawRecord | FetchBlock], book: LicenseBook, ledger: LedgerView) -> IngestBatch:
        """The batch the reference path builds from ``items`` (every record in Python)."""
        return build_batch(_records_of(items), book, ledger, self.catalog, self.registry, self.limits)

    def prebuild(self, items: Sequence[RawRecord | FetchBlock], book: LicenseBook):
        """The native rows of ``items``' fetches, or None when the fast path cannot take them.

        Reads no ledger state, so it may run on the polling thread while the writer appends.
        """
        blocks = [item for item in items if isinstance(item, FetchBlock)]
        pricer = self.pricer(book) if blocks else None
        if pricer is None:
            return None
        try:
            return pricer.build([(b.topic, b.partition, b.min_offset, b.data) for b in blocks])
        except ValueError as exc:  # a fetch it cannot lay out; the reference path reads it record by record
            log.warning("native fast path skipped a batch: %s", exc)
            return None

    def build(self, items: Sequence[RawRecord | FetchBlock], book: LicenseBook, ledger: LedgerView,
              rows=None, *, prebuilt: bool = False) -> IngestBatch:
        """The ledger batch of ``items``, from the native ``rows`` :meth:`prebuild` gave (``prebuilt``)."""
        rows = rows if prebuilt else self.prebuild(items, book)
        if rows is None or rows.needs_reference:
            return self.reference(items, book, ledger)
        batch = build_batch(self._rest(items, rows), book, ledger, self.catalog, self.registry, self.limits)
        # A record left to Python that shares a key with a fast-path event: the reference
        # path must decide which came first (duplicate, conflict), as it would alone.
        keys = [(e.platform_id, e.event_id) for e in batch.events]
        keys += [(q.platform_id, q.event_id) for q in batch.quarantined if q.event_id is not None]
        if keys and rows.holds_any(keys):
            return self.reference(items, book, ledger)
        offsets = dict(batch.offsets)
        for topic, partition, next_offset in rows.offsets:
            offsets[(topic, partition)] = max(offsets.get((topic, partition), 0), next_offset)
        return replace(batch, native=rows, offsets=offsets)
