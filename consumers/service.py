"""The ledger consumer: polls usage topics and appends each batch with its offsets.

Offsets live in the ledger, written in the same transaction as the rows they produced;
on assignment the consumer seeks to them. Kafka's committed offsets are written after
the ledger commit and serve lag monitoring only. Quarantined records also go to the
dead-letter topic, acknowledged before the ledger transaction commits (cut to fit the
producer's limit when they must be: :mod:`consumers.dead_letter`).

A batch that fails to apply is read again from the ledger's offsets, after a back-off;
:mod:`consumers.progress` says when the consumer counts as stalled.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata

from consumers.batch import PendingCorrectionError, RawRecord, kafka_timestamp, usage_limits
from consumers.checkpoints import Checkpoints
from consumers.dead_letter import DeadLetterSender
from consumers.fast_path import BatchBuilder, FetchBlock, install
from consumers.progress import Progress
from consumers.replay import replay_pending_corrections
from consumers.writer import BatchWriter
from consumers.kafka_admin import ensure_topics
from ground.errors import BrokerError, Terminal
from ground.metrics import Metrics
from ground.settings import Settings
from ledger.errors import DuplicateEventError, LedgerError
from ledger.core.licenses import LicenseBook
from ledger.core.port import LedgerStore
from ledger.core.records import IngestBatch
from schemas import default_catalog
from schemas.registry import SchemaRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEnd:
    """The log-end offsets of the assigned usage partitions at one instant: what a close books up to."""

    offsets: dict[tuple[str, int], int]
    """The next offset to be written per (topic, partition), as Kafka said then."""

    def describe(self) -> str:
        """``topic/partition=offset`` pairs, in order, for logs."""
        return ", ".join(f"{topic}/{partition}={offset}" for (topic, partition), offset in sorted(self.offsets.items()))


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
        self.accepted += batch.event_count
        self.accruals += batch.accrual_count
        self.duplicates += batch.duplicates
        self.quarantined += len(batch.quarantined)
        self.batches += 1
        for row in batch.quarantined:
            self.by_error[row.error_class] = self.by_error.get(row.error_class, 0) + 1


def _size(item: RawRecord | FetchBlock) -> int:
    """Kafka records an item stands for."""
    return item.count if isinstance(item, FetchBlock) else 1


def _bytes(item: RawRecord | FetchBlock) -> int:
    """Bytes of fetched data an item holds."""
    if isinstance(item, FetchBlock):
        return len(item.data)
    return len(item.value or b"") + len(item.key or b"")


class ConsumerHaltError(Terminal, LedgerError):
    """The consumer stopped rather than lose or double-count data; the message says why."""

    code = "consumer_halted"


class _SeekToLedger(ConsumerRebalanceListener):
    """Seeks every assigned partition to the offset stored in the ledger.

    Batches already polled are applied first (they were polled while the partitions
    were ours), so the stored offsets are current when read.
    """

    def __init__(self, consumer: KafkaConsumer, ledger: LedgerStore, writer: BatchWriter):
        self.consumer = consumer
        self.ledger = ledger
        self.writer = writer
        self.generation = 0  # bumped when partitions are revoked: records gathered before are stale
        self.booked: dict[tuple[str, int], int] = {}
        """Next offset booked in the ledger per assigned partition, as far as this consumer knows:
        read at each seek, raised by each applied batch (:func:`partition_lags`)."""
        # kafka-python calls the listener from inside poll(), on its network loop: the lock
        # keeps a rebalance from ever slipping between the staleness check and a submission.
        self.lock = threading.RLock()

    def on_partitions_revoked(self, revoked) -> None:
        with self.lock:
            if revoked:  # nothing owned before (a first join): nothing gathered can be stale
                self.generation += 1
            self.writer.wait()

    def on_partitions_assigned(self, assigned) -> None:
        """Seeks to the ledger's offsets. Newly assigned partitions have nothing gathered
        yet; partitions kept across an eager rebalance were revoked first (generation bumped)."""
        with self.lock:
            self.writer.wait()
            self._seek(assigned)

    def _seek(self, assigned) -> None:
        stored = self.ledger.stored_offsets()
        booked = {}
        for tp in assigned:
            key = (tp.topic, tp.partition)
            offset = stored.get(key)
            if offset is None:  # nothing booked: still where its first fetch started, once one has
                self.consumer.seek_to_beginning(tp)
                if key in self.booked:
                    booked[key] = self.booked[key]
            else:
                self.consumer.seek(tp, offset)
                booked[key] = offset
        self.booked = booked


def _starts(items: list[RawRecord | FetchBlock]) -> dict[tuple[str, int], int]:
    """The offset each partition's records in a batch start at (a fetch block's: where it was read from)."""
    starts: dict[tuple[str, int], int] = {}
    for item in items:
        first = item.min_offset if isinstance(item, FetchBlock) else item.offset
        key = (item.topic, item.partition)
        starts[key] = min(starts.get(key, first), first)
    return starts


def partition_lags(consumer: KafkaConsumer, booked: Mapping[tuple[str, int], int],
                   only: Mapping[tuple[str, int], int] | None = None) -> dict[tuple[str, int], int]:
    """Records not yet booked per assigned partition: the last fetch's high-water mark less the
    next offset ``booked`` (no extra broker call).

    Measured from what is booked, not from the fetch position, so that a consumer that
    fetches the same failing batch again and again reports the records waiting behind it
    at every sample, not only in the instant after each rewind. A partition whose
    high-water mark, or both booked offset and position, is not known yet is left out, and
    so is one not in ``only`` when it is given.
    """
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        if only is not None and (tp.topic, tp.partition) not in only:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        start = booked.get((tp.topic, tp.partition))
        if start is None:
            try:
                start = consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
        if start is not None:
            lags[(tp.topic, tp.partition)] = highwater - start
    return lags


def caught_up(consumer: KafkaConsumer) -> bool:
    """Whether every assigned partition's position has reached the high-water mark of its last
    fetch: everything Kafka held then has been polled (no extra broker call). A partition not
    fetched yet is not caught up."""
    assigned = consumer.assignment()
    if not assigned:
        return False
    for tp in assigned:
        highwater = consumer.highwater(tp)
        if highwater is None:
            return False
        try:
            position = consumer.position(tp, timeout_ms=0)
        except KafkaError:
            return False
        if position is None or position < highwater:
            return False
    return True


class LedgerConsumer:
    """Drains or follows the usage topics into ``ledger``."""

    def __init__(self, settings: Settings, ledger: LedgerStore):
        if not settings.kafka.bootstrap_servers:
            raise BrokerError("no Kafka bootstrap servers configured (LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS)")
        self.settings = settings
        self.ledger = ledger
        self.topics = settings.kafka.topics
        self.catalog = default_catalog()
        self.registry = SchemaRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
        self.stats = IngestStats()
        self.metrics = Metrics()
        self.progress = Progress()
        self.halt_when_stalled = False  # `run(until_idle=True)` gives up once stalled; following retries on
        self.stop_event = threading.Event()
        ledger.limit_memory(settings.consumer.ledger_memory_limit)
        self._pending_at_start = bool(ledger.open_quarantine_count(PendingCorrectionError.code))
        bootstrap = settings.kafka.bootstrap_servers
        ensure_topics(bootstrap, (*self.topics.usage, self.topics.dead_letter), settings.kafka.partitions,
                      replication_factor=settings.kafka.replication_factor,
                      min_insync_replicas=settings.kafka.min_insync_replicas)
        try:
            self.consumer = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=settings.consumer.group_id,
                client_id=f"{settings.kafka.client_id}-ledger",
                enable_auto_commit=False,
                auto_offset_reset="none",
                max_poll_records=settings.consumer.max_poll,
                max_partition_fetch_bytes=settings.consumer.fetch_partition_bytes,
                fetch_max_bytes=settings.consumer.fetch_max_bytes,
                fetch_max_wait_ms=settings.consumer.flush_interval_ms,
            )
            self.dead_letters = DeadLetterSender(bootstrap, f"{settings.kafka.client_id}-deadletter",
                                                 self.topics.dead_letter)
            self.dead_letters.connect()
        except KafkaError as exc:
            raise BrokerError(f"cannot connect the ledger consumer to Kafka at {bootstrap}: {exc}") from exc
        self.native = settings.consumer.native and install(self.consumer)
        # Set once nothing above can fail, so that close() (which restores them) is due.
        self._threads_before = ledger.limit_threads(settings.consumer.ledger_threads)
        self.checkpoints = Checkpoints(ledger, self.metrics, settings.consumer)
        self.limits = usage_limits(settings.consumer)
        self.builder = BatchBuilder(self.catalog, self.registry, self.limits)
        self.writer = BatchWriter()
        self.books = ledger.reader()  # the polling thread's own cursor, for the license book
        self._applied_offsets: dict[tuple[str, int], int] = {}
        self._offsets_lock = threading.Lock()
        self.listener = _SeekToLedger(self.consumer, ledger, self.writer)
        self.consumer.subscribe(self.topics.usage, listener=self.listener)

    def close(self) -> None:
        """Applies the batches already polled, checkpoints the ledger, then leaves the group.

        The ledger's DuckDB threads and checkpoint threshold go back to what they were, so that
        what runs on the ledger after the consumer (``learnright close``'s close after its
        catch-up) has them all, and starts from an empty write-ahead log.
        """
        self.writer.close()
        try:
            self.ledger.limit_threads(self._threads_before)
            self.checkpoints.close()
        finally:
            self.books.close()
            self.consumer.close(autocommit=False)
            self.dead_letters.close()

    def run(self, *, until_idle: bool = False) -> IngestStats:
        """Consumes until stopped, or with ``until_idle`` until every partition is drained.

        Raises:
            ConsumerHaltError: with ``until_idle``, when the consumer is stalled
                (:mod:`consumers.progress`); following, it keeps retrying instead.
        """
        self.halt_when_stalled = until_idle
        deadline = time.monotonic() + self.settings.consumer.idle_timeout_s
        while not self.stop_event.is_set():
            if self.run_once(wait=False):
                continue
            self.drain()
            if until_idle:
                assignment = self.consumer.assignment()
                if assignment and self._drained(assignment):
                    break
                if not assignment and time.monotonic() > deadline:
                    raise BrokerError(
                        f"no partitions of {', '.join(self.topics.usage)} were assigned within"
                        f" {self.settings.consumer.idle_timeout_s}s"
                    )
        self.drain()
        return self.stats

    def drain(self) -> None:
        """Waits until every polled batch is in the ledger, or a failed one is rewound (:meth:`_retry`)."""
        try:
            self.writer.drain()
        except Exception as exc:  # noqa: BLE001 - a failed batch, handed over by the writer
            self._retry(exc)
        self._commit_for_monitoring()

    def run_once(self, *, wait: bool = True) -> int:
        """Polls one batch and applies it; returns its size in records (0 if none, or dropped).

        A batch gathers polls until it holds ``max_batch`` records or ``max_batch_bytes`` of
        fetched data, or ``flush_interval_ms`` has passed since the first poll, or it holds every
        record Kafka has while the writer has nothing to write: a consumer that keeps up
        writes what arrives at once instead of waiting out the interval, and one that is
        behind still writes big batches (the batch gathers while the writer is busy), so
        batches are as large as the backlog needs and no larger. Batch boundaries never show
        in what is hashed or signed (docs/ingestion.md). With ``wait`` off, the batch is applied on the
        writer thread while the caller polls the next one; :meth:`drain` waits for it. A poll
        that brings nothing waits for the writer too, so a failed batch is seen (and read
        again, :meth:`_retry`) without waiting for more traffic.
        """
        limits = self.settings.consumer
        generation = self.listener.generation
        deadline = time.monotonic() + limits.flush_interval_ms / 1000
        items: list[RawRecord | FetchBlock] = []
        size = held = 0
        while size < limits.max_batch and held < limits.max_batch_bytes:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            polled = self._poll(remaining_ms, min(limits.max_poll, limits.max_batch - size))
            if not polled:
                break
            items.extend(polled)
            size += sum(_size(item) for item in polled)
            held += sum(_bytes(item) for item in polled)
            for key, start in _starts(polled).items():  # a partition read from its beginning: booked up to here
                self.listener.booked.setdefault(key, start)
            if remaining_ms == 0 or (self.writer.idle and caught_up(self.consumer)):
                break
        try:
            if items:
                book = self.books.load_book()
                rows = self.builder.prebuild(items, book) if self.native else None
                with self.listener.lock:
                    if self._current(items, generation):
                        self.writer.submit(lambda: self.apply(items, book, rows))
                    else:
                        size = 0  # dropped: read again from the ledger's offsets
            if wait or not items:  # idle, nothing to overlap: a failed batch must not wait for the next record
                self.writer.drain()
            if self.checkpoints.due() and caught_up(self.consumer):  # keeping up: a short checkpoint now
                self.writer.submit(self.checkpoints.queue())
            elif not items and self.checkpoints.merge_due():  # nothing waiting: merge what the short ones left
                self.writer.submit(self.checkpoints.queue("idle"))
        except Exception as exc:  # noqa: BLE001 - this batch or an earlier one failed: read again
            self._retry(exc)
            size = 0
        self._commit_for_monitoring()
        self.metrics.observe_lag(partition_lags(self.consumer, self.listener.booked))
        return size

    def _poll(self, timeout_ms: int, max_records: int) -> list[RawRecord | FetchBlock]:
        try:
            polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except OffsetOutOfRangeError as exc:
            raise ConsumerHaltError(
                f"a stored offset is no longer in Kafka ({exc}): the records after it expired before they were"
                " booked. The consumer halts instead of silently skipping or re-reading; restore the records"
                " or decide on a reset explicitly"
            ) from exc
        return [
            r if isinstance(r, FetchBlock) else
            RawRecord(topic=r.topic, partition=r.partition, offset=r.offset, timestamp=kafka_timestamp(r.timestamp),
                      key=r.key, value=r.value, headers=tuple((k, v or b"") for k, v in (r.headers or ())))
            for batch in polled.values() for r in batch
        ]

    def _retry(self, exc: Exception) -> None:
        """Rewinds to the ledger's offsets after a batch failed, and waits before reading again.

        The stopped writer is replaced by a fresh one and every assigned partition is sought
        to its offset in the ledger, so the failed batch, and whatever was polled after it,
        is read again: nothing is skipped. Counts the failure (:mod:`consumers.progress`).

        Raises:
            Exception: ``exc`` itself when the consumer is stopping (the run fails with it).
            ConsumerHaltError: when stalled and :attr:`halt_when_stalled`.
        """
        failures = self.progress.failed()
        stalled = self.progress.stalled
        self.metrics.observe_failure(stalled=stalled)
        log.log(logging.ERROR if stalled else logging.WARNING,
                "a batch failed to apply (%d in a row%s); reading it again from the ledger's offsets: %s",
                failures, ", the consumer is stalled" if stalled else "", exc, exc_info=exc)
        with self.listener.lock:
            self.writer.close()  # its thread has stopped on the failure; the error is handled here
            self.writer = self.listener.writer = BatchWriter()
            self.listener.on_partitions_assigned(self.consumer.assignment())
        self.dead_letters.reset()  # a producer the broker refused refuses everything after: start afresh
        if self.stop_event.is_set():
            raise exc
        if stalled and self.halt_when_stalled:
            raise ConsumerHaltError(
                f"the consumer is stalled: {failures} batches in a row failed to apply, each read again from the"
                f" ledger's offsets; the last failed with {type(exc).__name__}: {exc}") from exc
        self.stop_event.wait(self.progress.backoff_s())

    def _current(self, items: list[RawRecord | FetchBlock], generation: int) -> bool:
        """False (and the batch dropped) when a rebalance came while it was gathered.

        Its records were polled before the rebalance: a partition's owner now reads them
        from the ledger's offsets, where the rebalance seeked it (this consumer again, if it
        kept the partition). The ledger file's single-writer lock keeps a second process out.
        """
        owned = self.consumer.assignment()
        if generation == self.listener.generation and all(
                TopicPartition(r.topic, r.partition) in owned for r in items):
            return True
        log.warning("dropping a batch of %d records gathered across a rebalance; re-reading from the ledger's offsets",
                    sum(_size(item) for item in items))
        self.writer.wait()
        self.listener.on_partitions_assigned(owned)  # re-read what we still own from the ledger's offsets
        return False

    def _commit_for_monitoring(self) -> None:
        """Commits the offsets of applied batches to Kafka, for lag monitoring only."""
        with self._offsets_lock:
            offsets, self._applied_offsets = self._applied_offsets, {}
        if not offsets:
            return
        try:
            self.consumer.commit({
                TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                for (topic, partition), offset in offsets.items()
            })
        except KafkaError as exc:  # Monitoring only: the ledger holds the real offsets.
            log.warning("committing offsets to Kafka for lag monitoring failed: %s", exc)

    def log_end(self) -> LogEnd | None:
        """The log-end offsets of the assigned partitions now; None while none is assigned (or Kafka does not say).

        A subscription is assigned by the polls that follow it, so call this between polls.
        """
        assignment = list(self.consumer.assignment())
        if not assignment:
            return None
        try:
            ends = self.consumer.end_offsets(assignment)
        except KafkaError as exc:  # asked again between the next batches
            log.warning("could not read the log-end offsets of %d partitions: %s", len(assignment), exc)
            return None
        return LogEnd(offsets={(tp.topic, tp.partition): offset for tp, offset in ends.items()})

    def reached(self, log_end: LogEnd) -> bool:
        """Whether the consumer's position is at or past ``log_end`` on every partition in it.

        Only polled, not booked, until :meth:`drain` has returned: call it again after that.
        """
        assignment = self.consumer.assignment()
        for (topic, partition), offset in log_end.offsets.items():
            tp = TopicPartition(topic, partition)
            if tp not in assignment:  # moved away in a rebalance: not reached until it is back
                return False
            try:
                position = self.consumer.position(tp, timeout_ms=0)
            except KafkaError:
                return False
            if position is None or position < offset:
                return False
        return True

    def _drained(self, assignment) -> bool:
        """Whether every assigned partition is read to its end; not drained while the broker cannot say
        (a leader moving, a broker restarting): the consumer keeps polling and asks again."""
        try:
            ends = self.consumer.end_offsets(list(assignment))
            return all(self.consumer.position(tp) >= ends[tp] for tp in assignment)
        except KafkaError as exc:
            log.warning("cannot read the end offsets of %d partitions yet (%s); polling on", len(assignment), exc)
            return False

    def apply(self, records: list[RawRecord | FetchBlock], book: LicenseBook | None = None, rows=None) -> IngestBatch:
        """Prices and appends one batch; dead-letters its rejects first (runs on the writer thread).

        ``rows`` are the batch's native rows built on the polling thread, priced by ``book``.
        """
        book = book if book is not None else self.ledger.load_book()
        starts = _starts(records)
        batch = replace(self.builder.build(records, book, self.ledger, rows, prebuilt=self.native), starts=starts)
        sent = self._dead_letter(batch, set())
        started = time.perf_counter()
        try:
            self.ledger.append_batch(batch)
        except DuplicateEventError as exc:  # a redelivered event: the reference path sorts it out
            log.info("rebuilding a batch through the reference path: %s", exc)
            batch = replace(self.builder.reference(records, book, self.ledger), starts=starts)
            self._dead_letter(batch, sent)
            self.ledger.append_batch(batch)
        self.checkpoints.after_batch()
        size = sum(_size(item) for item in records)
        with self._offsets_lock:
            self._applied_offsets.update(batch.offsets)
            self.listener.booked.update(batch.offsets)
        # The lag of what was just booked, before the counters move: whoever sees them counted sees this lag.
        # Only booked partitions: no position is asked for, so no broker call leaves this (the writer's) thread.
        self.metrics.observe_lag(partition_lags(self.consumer, self.listener.booked, only=batch.offsets))
        self.progress.committed()
        self.metrics.observe_batch(batch, size, time.perf_counter() - started)
        self.stats.add(batch, size)
        if batch.event_count and self._pending_corrections():
            replay_pending_corrections(self.ledger, self.catalog, self.registry, self.limits)
        return batch

    def _pending_corrections(self) -> bool:
        if self.stats.by_error.get(PendingCorrectionError.__name__) or self._pending_at_start:
            return bool(self.ledger.open_quarantine_count(PendingCorrectionError.code))
        return False

    def _dead_letter(self, batch: IngestBatch, sent: set[tuple[str, int, int]]) -> set[tuple[str, int, int]]:
        """Sends the batch's quarantined records not in ``sent`` to the dead-letter topic; returns all sent."""
        rows = [row for row in batch.quarantined if (row.topic, row.partition, row.offset) not in sent]
        self.dead_letters.send(rows)
        return sent | {(row.topic, row.partition, row.offset) for row in rows}


def consume_until_idle(settings: Settings, ledger: LedgerStore) -> IngestStats:
    """Books everything in the usage topics now (``consume --until-idle``), then leaves the group.

    Raises:
        BrokerError: Kafka cannot be reached, or no partition was assigned within ``consumer.idle_timeout_s``.
        ConsumerHaltError: the consumer is stalled.
    """
    consumer = LedgerConsumer(settings, ledger)
    try:
        return consumer.run(until_idle=True)
    finally:
        consumer.close()
