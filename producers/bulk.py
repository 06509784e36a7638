"""The emitter's bulk path: usage events to whole Kafka record batches, handed to kafka-python.

kafka-python's ``KafkaProducer.send`` costs about 50 us a record in Python (partitioner,
accumulator, record builder, a future per record), which caps one process near 15-20k
records/s. On this path the native module (``native/src/produce.rs``) encodes a list of
events in one call: Avro bodies behind their header, keys, partitions (kafka-python's
murmur2 partitioner), and whole record batches. Each batch is then appended to the
producer's own accumulator as a :class:`NativeBatch`, so kafka-python's sender thread
sends it exactly as one of its own: producer id, epoch and sequence numbers set when it
is drained, compression and CRC when it is closed, retries, ``acks=all``.

Guarantees:
  * The bytes on the wire are the reference path's: the same Avro bodies as fastavro
    (tests compare them byte for byte), the same keys and partitions as
    ``KafkaProducer.send`` with its default partitioner, the records of a partition in the
    order they were given.
  * Each event's delivery is known: a batch carries the ids of its events in record order,
    so a failed batch names every event it held (:meth:`NativeBatch.failures`), also after
    kafka-python splits a batch the broker found too large.
  * The path is used only where it is certain to match: the native module built, the
    catalog's latest usage schemas the ones it was written for, kafka-python's default
    partitioner, no serializers, no transactions, record format v2, and kafka-python's
    internals as this module expects them (:func:`unavailable` says which is missing).
    Otherwise the emitter sends every event through ``KafkaProducer.send``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Sequence

from kafka.errors import KafkaTimeoutError
from kafka.partitioner.default import DefaultPartitioner
from kafka.producer.future import FutureRecordMetadata
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

from ground.topics import Topics
from ledger.core.usage import EVENT_CLASSES, UsageLimits
from producers.encoding import MAX_EVENT_BYTES, RECORD_NAME
from schemas.catalog import SchemaVersion

try:
    import learnright_native as native
except ImportError:  # pragma: no cover - `make setup` builds it
    native = None

KINDS = ("training", "inference", "revenue", "correction")
"""The usage kinds in the order the native batcher numbers them."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class NativeBatch(ProducerBatch):
    """A record batch built by the native path, with the ids of its events in record order.

    kafka-python may append records of ``KafkaProducer.send`` after them (its own futures
    follow ``event_ids``); the emitter settles those through their futures.
    """

    def __init__(self, tp: TopicPartition, records: MemoryRecordsBuilder, *, name: str, event_ids: list[str]):
        super().__init__(tp, records)
        self.name = name
        self.event_ids = event_ids
        self.split_futures: list[FutureRecordMetadata] | None = None
        """One future per event once kafka-python split the batch (the batch's own future then never completes)."""

    @property
    def count(self) -> int:
        return len(self.event_ids)

    @property
    def settled(self) -> bool:
        if self.split_futures is not None:
            return all(future.is_done for future in self.split_futures)
        return self.produce_future.is_done

    def wait(self, timeout_s: float) -> None:
        """Waits until every event of the batch is settled, for at most ``timeout_s``.

        Raises:
            KafkaTimeoutError: it was not settled in time.
        """
        deadline = time.monotonic() + timeout_s
        waits = self.split_futures if self.split_futures is not None else (self.produce_future,)
        for future in list(waits):
            left = max(deadline - time.monotonic(), 0.0)
            if isinstance(future, FutureRecordMetadata):
                future = future._produce_future  # the (possibly rebound) batch it now waits on
            if not future.wait(left) and not self.settled:
                raise KafkaTimeoutError(f"batch of {self.count} records to {self.topic_partition} not settled")
        if not self.settled and self.split_futures is not None:  # split again meanwhile
            self.wait(max(deadline - time.monotonic(), 0.0))

    def failures(self) -> list[tuple[str, BaseException]]:
        """(event id, error) of every event of a settled batch that Kafka did not acknowledge."""
        if self.split_futures is not None:
            return [(event_id, future.exception) for event_id, future in zip(self.event_ids, self.split_futures)
                    if future.exception is not None]
        if self.produce_future.failed():
            return [(event_id, self.produce_future.exception) for event_id in self.event_ids]
        record_errors = self.produce_future.value[2]
        if record_errors is None:
            return []
        return [(event_id, record_errors(index)) for index, event_id in enumerate(self.event_ids)]


def unavailable(producer: Any, schemas: dict[str, SchemaVersion]) -> str | None:
    """Why the native path cannot serve ``producer`` with ``schemas`` (kind -> latest), or None when it can."""
    if native is None or not hasattr(native, "UsageBatcher"):
        return "the native module (native/, built by make setup) is not installed or has no UsageBatcher"
    for kind, schema in schemas.items():
        expected = native.PRODUCE_SCHEMAS.get(schema.name)
        if expected != schema.fingerprint.hex():
            return f"the latest {schema.name} (v{schema.version}) is not the schema the native encoder was written for"
    config = producer.config
    if type(config.get("partitioner")) is not DefaultPartitioner:
        return "a partitioner other than kafka-python's default is configured"
    if config.get("key_serializer") is not None or config.get("value_serializer") is not None:
        return "a key or value serializer is configured"
    if config.get("transactional_id"):
        return "the producer is transactional"
    accumulator = getattr(producer, "_accumulator", None)
    if accumulator is None or accumulator.config.get("message_version") != 2:
        return "the producer does not write record format v2"
    probe = MemoryRecordsBuilder(2, 0, 1024)
    internals = (
        (accumulator, ("_batches", "_tp_lock", "_incomplete", "_appends_in_progress", "split_and_reenqueue")),
        (producer, ("_metadata", "_sender", "_wait_on_metadata")),
        (probe, ("_builder", "_next_offset")),
        (probe._builder, ("_buffer", "_num_records", "_last_offset", "_first_timestamp", "_max_timestamp")),
    )
    for owner, names in internals:
        missing = [name for name in names if not hasattr(owner, name)]
        if missing:
            return f"this kafka-python's {type(owner).__name__} has no {', '.join(missing)}"
    if len(probe._builder._buffer) != 61:
        return "this kafka-python's record batch header is not 61 bytes"
    return None


class BulkPath:
    """The native batcher of one emitter and the hand-over of its batches to the emitter's producer.

    Not thread-safe: one emitter's caller thread uses it (kafka-python's sender thread only
    reads the batches once appended, under the accumulator's locks).
    """

    def __init__(self, producer: Any, topics: Topics, schemas: dict[str, SchemaVersion], limits: UsageLimits,
                 *, headers: dict[str, bytes | None], max_block_ms: int):
        self._producer = producer
        self._accumulator = producer._accumulator
        names = [topics.for_event(RECORD_NAME[kind]) for kind in KINDS]
        self.topics: tuple[str, ...] = tuple(dict.fromkeys(names))
        self._batch_size = self._accumulator.config["batch_size"]
        self._compression = self._accumulator.config["compression_attrs"]
        self._max_block_ms = max_block_ms
        self._tracked: set[str] = set()
        self._batcher = native.UsageBatcher(
            classes=[EVENT_CLASSES[RECORD_NAME[kind]] for kind in KINDS],
            headers=[headers[kind] for kind in KINDS],
            topic_of=[self.topics.index(name) for name in names],
            batch_size=self._batch_size, max_event_bytes=MAX_EVENT_BYTES, max_future_s=limits.max_future_s,
            max_attributions=limits.max_attributions, datetime=datetime, decimal=Decimal, epoch=_EPOCH,
            microsecond=timedelta(microseconds=1),
        )
        self._names = {self.topics.index(name): RECORD_NAME[kind] for kind, name in zip(KINDS, names)}
        _install_split(self._accumulator)

    def set_header(self, kind: str, header: bytes) -> None:
        self._batcher.set_header(KINDS.index(kind), header)

    def partitions(self) -> list[int]:
        """Partition count of each topic, 0 where kafka-python has no metadata of it yet (or
        its partitions are not numbered 0..n-1): events of that topic go the reference way."""
        counts = []
        for topic in self.topics:
            found = self._producer._metadata.partitions_for_topic(topic)
            if not found or sorted(found) != list(range(len(found))):
                counts.append(0)
                continue
            if topic not in self._tracked:  # keep its metadata refreshed, as send() would
                self._producer._sender.add_topic(topic)
                self._tracked.add(topic)
            counts.append(len(found))
        return counts

    def add(self, events: list, start: int, partitions: list[int]) -> int:
        """Encodes ``events[start:]`` into batches; returns the index of the first event not taken."""
        return self._batcher.add(events, start, partitions, time.time_ns() // 1_000_000)

    @property
    def held(self) -> int:
        """Records encoded but not yet taken."""
        return self._batcher.held

    def take(self, everything: bool) -> list[NativeBatch]:
        """The batches that filled up (``everything``: all, also the open ones), not yet handed over."""
        built = []
        for topic, partition, data, count, first_ts, max_ts, max_record, event_ids in self._batcher.take(everything):
            records = records_builder(data, count, first_ts, max_ts, compression=self._compression,
                                      batch_size=self._batch_size)
            batch = NativeBatch(TopicPartition(self.topics[topic], partition), records, name=self._names[topic],
                                event_ids=event_ids)
            batch.max_record_size = max_record
            built.append(batch)
        return built

    def hand_over(self, batch: NativeBatch) -> None:
        """Appends ``batch`` to its partition's queue in the producer's accumulator (:meth:`wake_sender` next).

        Raises:
            kafka.errors.IllegalStateError: the producer is closed.
        """
        accumulator = self._accumulator
        accumulator._appends_in_progress.increment()
        try:
            with accumulator._tp_lock(batch.topic_partition):
                if accumulator._closed:
                    from kafka.errors import IllegalStateError
                    raise IllegalStateError("RecordAccumulator is closed")
                accumulator._batches[batch.topic_partition].append(batch)
                accumulator._incomplete.add(batch)
        finally:
            accumulator._appends_in_progress.decrement()

    def wake_sender(self) -> None:
        """Wakes kafka-python's sender thread to look at the batches handed over (once per hand-over, not per batch)."""
        self._producer._sender.wakeup()


def records_builder(data: bytearray, count: int, first_ts: int, max_ts: int, *, compression: int,
                    batch_size: int) -> MemoryRecordsBuilder:
    """kafka-python's builder of a record batch, holding ``count`` records the native batcher wrote.

    ``data`` is the batch with room for its header; kafka-python writes the header,
    compresses and checksums when the sender closes the batch, after it set the producer
    id, epoch and first sequence number.
    """
    records = MemoryRecordsBuilder(2, compression, batch_size)
    builder = records._builder
    builder._buffer = data
    builder._num_records = count
    builder._last_offset = count - 1
    builder._first_timestamp = first_ts
    builder._max_timestamp = max_ts
    records._next_offset = count
    return records


def _install_split(accumulator: Any) -> None:
    """Lets kafka-python split a :class:`NativeBatch` the broker refused as too large.

    Its split rebinds one future per record to the smaller batches; a native batch has no
    futures of its own, so they are made first (only then: splits are rare) and the batch
    follows them instead of its own future, which a split never completes.
    """
    if getattr(accumulator, "_learnright_split", False):
        return
    original = accumulator.split_and_reenqueue

    def split_and_reenqueue(batch: ProducerBatch, now: float | None = None) -> int:
        if isinstance(batch, NativeBatch) and batch.split_futures is None:
            futures = [FutureRecordMetadata(batch.produce_future, index, -1, None, -1, -1, -1)
                       for index in range(batch.count)]
            batch._record_futures[:0] = futures
            batch.split_futures = futures
        return original(batch, now=now)

    accumulator.split_and_reenqueue = split_and_reenqueue
    accumulator._learnright_split = True


def chunks(events: Any, size: int, linger_s: float) -> Any:
    """``events`` (any iterable) as lists of at most ``size``: the native path takes a list at a time.

    A chunk of an iterator is also cut when ``linger_s`` passed since its first event, so a
    slow generator's events wait no longer than the producer's linger before they are sent
    (measured when the next event arrives: a generator blocked between events holds the
    chunk until it yields again or ends).
    """
    if isinstance(events, (list, tuple)):
        for start in range(0, len(events), size):
            yield list(events[start:start + size]) if isinstance(events, tuple) or len(events) > size else events
        return
    clock = time.monotonic
    chunk: list = []
    started = 0.0
    for event in events:
        if not chunk:
            started = clock()
        chunk.append(event)
        if len(chunk) == size or clock() - started >= linger_s:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__: Sequence[str] = ("NativeBatch", "BulkPath", "unavailable", "chunks", "KINDS")
