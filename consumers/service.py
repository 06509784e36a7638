"""The ledger consumer: polls usage topics and appends each batch with its offsets.

Offsets live in the ledger, written in the same transaction as the rows they produced;
on assignment the consumer seeks to them. Kafka's committed offsets are written after
the ledger commit and serve lag monitoring only. Quarantined records also go to the
dead-letter topic, acknowledged before the ledger transaction commits.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata

from consumers.batch import PendingCorrectionError, RawRecord, build_batch
from consumers.replay import replay_pending_corrections
from learnright.admin import ensure_topics
from learnright.errors import BrokerError
from learnright.metrics import Metrics
from learnright.settings import Settings
from ledger.errors import LedgerError
from ledger.store import IngestBatch, Ledger
from schemas import default_catalog
from schemas.registry import SchemaRegistry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestStats:
    records: int = 0
    accepted: int = 0
    accruals: int = 0
    duplicates: int = 0
    quarantined: int = 0
    batches: int = 0
    by_error: dict[str, int] = field(default_factory=dict)

    def add(self, batch: IngestBatch, records: int) -> None:
        self.records += records
        self.accepted += len(batch.events)
        self.accruals += len(batch.accruals)
        self.duplicates += batch.duplicates
        self.quarantined += len(batch.quarantined)
        self.batches += 1
        for row in batch.quarantined:
            self.by_error[row.error_class] = self.by_error.get(row.error_class, 0) + 1


class ConsumerHaltError(LedgerError):
    """The consumer stopped rather than lose or double-count data; the message says why."""


class _SeekToLedger(ConsumerRebalanceListener):
    """Seeks every assigned partition to the offset stored in the ledger."""

    def __init__(self, consumer: KafkaConsumer, ledger: Ledger):
        self.consumer = consumer
        self.ledger = ledger

    def on_partitions_revoked(self, revoked) -> None:
        pass

    def on_partitions_assigned(self, assigned) -> None:
        stored = self.ledger.stored_offsets()
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)


class LedgerConsumer:
    """Drains or follows the usage topics into ``ledger``."""

    def __init__(self, settings: Settings, ledger: Ledger):
        if not settings.kafka.bootstrap_servers:
            raise BrokerError("no Kafka bootstrap servers configured (LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS)")
        self.settings = settings
        self.ledger = ledger
        self.topics = settings.kafka.topics
        self.catalog = default_catalog()
        self.registry = SchemaRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
        self.stats = IngestStats()
        self.metrics = Metrics()
        self.stop_event = threading.Event()
        self._pending_at_start = bool(ledger.open_quarantine_count(PendingCorrectionError.__name__))
        bootstrap = settings.kafka.bootstrap_servers
        ensure_topics(bootstrap, (*self.topics.usage, self.topics.dead_letter), settings.kafka.partitions)
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=settings.consumer.group_id,
                client_id=f"{settings.kafka.client_id}-ledger",
                enable_auto_commit=False,
                auto_offset_reset="none",
                max_poll_records=settings.consumer.max_batch,
                fetch_max_wait_ms=settings.consumer.flush_interval_ms,
            )
            self.dead_letters = KafkaProducer(
                bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                client_id=f"{settings.kafka.client_id}-deadletter",
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot connect the ledger consumer to Kafka at {bootstrap}: {exc}") from exc
        self.listener = _SeekToLedger(self.consumer, ledger)
        self.consumer.subscribe(self.topics.usage, listener=self.listener)

    def close(self) -> None:
        self.consumer.close(autocommit=False)
        self.dead_letters.close()

    def run(self, *, until_idle: bool = False) -> IngestStats:
        """Consumes until stopped, or with ``until_idle`` until every partition is drained."""
        deadline = time.monotonic() + self.settings.consumer.idle_timeout_s
        while not self.stop_event.is_set():
            if self.run_once():
                continue
            if until_idle:
                assignment = self.consumer.assignment()
                if assignment and self._drained(assignment):
                    break
                if not assignment and time.monotonic() > deadline:
                    raise BrokerError(
                        f"no partitions of {', '.join(self.topics.usage)} were assigned within"
                        f" {self.settings.consumer.idle_timeout_s}s"
                    )
        return self.stats

    def run_once(self) -> int:
        """Polls once (waiting at most the flush interval) and applies what came; returns its size."""
        try:
            polled = self.consumer.poll(
                timeout_ms=self.settings.consumer.flush_interval_ms, max_records=self.settings.consumer.max_batch
            )
        except OffsetOutOfRangeError as exc:
            raise ConsumerHaltError(
                f"a stored offset is no longer in Kafka ({exc}): the records after it expired before they were"
                " booked. The consumer halts instead of silently skipping or re-reading; restore the records"
                " or decide on a reset explicitly"
            ) from exc
        records = [
            RawRecord(topic=r.topic, partition=r.partition, offset=r.offset, key=r.key, value=r.value,
                      headers=tuple((k, v or b"") for k, v in (r.headers or ())))
            for batch in polled.values() for r in batch
        ]
        if records:
            self.apply(records)
        self.metrics.observe_lag(self.consumer)
        return len(records)

    def _drained(self, assignment) -> bool:
        ends = self.consumer.end_offsets(list(assignment))
        return all(self.consumer.position(tp) >= ends[tp] for tp in assignment)

    def apply(self, records: list[RawRecord]) -> IngestBatch | None:
        """Prices and appends one batch; dead-letters its rejects first, then commits.

        A batch polled before a rebalance, or holding a partition this consumer no longer
        owns, is dropped unapplied: the partition's next owner reads it from the ledger's
        offsets. (The ledger file's single-writer lock already keeps a second process out.)
        """
        owned = self.consumer.assignment()
        if any(TopicPartition(r.topic, r.partition) not in owned for r in records):
            log.warning("dropping a batch of %d records holding partitions no longer owned", len(records))
            self.listener.on_partitions_assigned(owned)  # re-read what we still own from the ledger's offsets
            return None
        batch = build_batch(records, self.ledger.load_book(), self.ledger, self.catalog, self.registry)
        if batch.quarantined:
            self._dead_letter(batch)
        started = time.perf_counter()
        self.ledger.append_batch(batch)
        self.metrics.observe_batch(batch, len(records), time.perf_counter() - started)
        self.stats.add(batch, len(records))
        if batch.events and self._pending_corrections():
            replay_pending_corrections(self.ledger, self.catalog, self.registry)
        try:
            self.consumer.commit({
                TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                for (topic, partition), offset in batch.offsets.items()
            })
        except KafkaError as exc:  # Monitoring only: the ledger holds the real offsets.
            log.warning("committing offsets to Kafka for lag monitoring failed: %s", exc)
        return batch

    def _pending_corrections(self) -> bool:
        if self.stats.by_error.get(PendingCorrectionError.__name__) or self._pending_at_start:
            return bool(self.ledger.open_quarantine_count(PendingCorrectionError.__name__))
        return False

    def _dead_letter(self, batch: IngestBatch) -> None:
        futures = []
        for row in batch.quarantined:
            headers = list(row.headers) + [
                ("learnright.original.topic", row.topic.encode()),
                ("learnright.original.partition", str(row.partition).encode()),
                ("learnright.original.offset", str(row.offset).encode()),
                ("learnright.error.class", row.error_class.encode()),
                ("learnright.error.message", row.reason.encode()),
            ]
            futures.append(self.dead_letters.send(self.topics.dead_letter, key=row.key, value=row.value, headers=headers))
        self.dead_letters.flush()
        for future in futures:
            try:
                future.get(timeout=30)
            except KafkaError as exc:
                raise BrokerError(f"dead-letter topic {self.topics.dead_letter} did not acknowledge: {exc}") from exc
