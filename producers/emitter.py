"""UsageEmitter: what a training job or an inference service calls to report usage.

Guarantees:
  * Validation happens before anything is sent; an error names the field and value.
    It includes the ledger's bounds on plausible usage (``limits``, by default the
    ledger's defaults): ``occurred_at`` no more than ``max_future_s`` after now, each
    source once per answer, at most ``max_attributions`` sources per answer.
  * Delivery is acks=all with an idempotent producer and retries, so a retry never
    duplicates a record in Kafka.
  * An asynchronous delivery failure is never swallowed: it is raised by a later call
    to the emitter once the records sent before it are settled, and at the latest by
    :meth:`flush` or :meth:`close`; each failed event is named.
  * Memory is bounded: at most ``max_pending`` records wait for acknowledgement; a
    full buffer blocks the caller (back-pressure) for at most ``max_block_ms``.
  * Throughput: records are batched (``linger_ms``, ``batch_size``) and compressed
    (lz4) by default (:data:`PRODUCER_SETTINGS`), and the emitter adds no callback per
    record: it keeps each record's future (or each whole batch) and settles them in
    order, on the caller's thread. :meth:`UsageEmitter.send_events` sends many events in
    whole record batches built natively (:mod:`producers.bulk`), several times faster than
    one ``send_event`` per event, with the same bytes, keys, partitions and guarantees.
    See "Producing" in docs/benchmarks.md.
  * Each source's training usage goes to one partition (keyed by source), in order.
  * No record is larger than :data:`producers.encoding.MAX_EVENT_BYTES` encoded; a larger event is refused
    with a :class:`ValidationError` before anything of it is sent.
  * Every record names its writer schema: Avro single-object encoding by default, or
    Confluent framing (magic 0 + schema id) when ``schema_registry_url`` is given; the
    schema is then registered under ``<topic>-value`` once per process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, UnknownError

from ground.errors import BrokerError, TransientError
from ground.topics import Topics
from ledger.core.usage import DEFAULT_LIMITS, UsageEvent, UsageLimits, limit_problems, to_record, validate
from schemas import Catalog, default_catalog, encode
from schemas.registry import SchemaRegistry
from schemas.wire import MAGIC, encode_confluent
from producers import bulk
from producers.encoding import RECORD_NAME, oversize_problem

PRODUCER_SETTINGS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "retries": 2_147_483_647,
    "max_in_flight_requests_per_connection": 5,
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "compression_type": "lz4",
}
"""The emitter's producer settings (``producer_options`` may override any but the first four).

acks=all with idempotence: a retry never duplicates a record. A 20 ms linger and 512 KiB
batches make few, large requests, which is what kafka-python's sender thread spends its
time on; lz4 shrinks them at little CPU cost (usage records compress about 4:1).
"""

class DeliveryError(TransientError):
    """Kafka did not acknowledge a record; the message names the event."""

    code = "delivery_failed"


def partition_key(event: UsageEvent) -> bytes:
    """The record key that keeps every rule about one event inside one partition: ``<platform>/<event id>``.

    A redelivery and a conflicting resend of an event share its id, so one partition (one
    ledger writer) sees both and decides; every correction of an event is keyed by the id of
    the event it corrects, so the corrections of one event meet in one partition of the
    corrections topic and one writer decides which applies (docs/scaling.md, "Partition keys").
    """
    subject = event.corrects_event_id if event.kind == "correction" else event.event_id
    return f"{event.platform_id}/{subject}".encode()


class UsageEmitter:
    """Sends validated usage events of one platform to Kafka.

    ``platform_id`` stamps the events made by the typed entry points; ``send_event``
    sends already built events of any platform as they are.

    Example::

        with UsageEmitter("127.0.0.1:9092", platform_id="acme") as emitter:
            emitter.training(model_id="m1", run_id="r7", source_id="src-1",
                             units=2_100_000, unit="tokens", occurred_at=now)
    """

    def __init__(
        self,
        bootstrap_servers: str,
        platform_id: str | None = None,
        *,
        topics: Topics | None = None,
        catalog: Catalog | None = None,
        max_pending: int = 50_000,
        max_block_ms: int = 60_000,
        linger_ms: int = PRODUCER_SETTINGS["linger_ms"],
        delivery_timeout_ms: int = 120_000,
        schema_registry_url: str | None = None,
        limits: UsageLimits = DEFAULT_LIMITS,
        **producer_options: Any,
    ):
        self.platform_id = platform_id
        self.limits = limits
        self.registry = SchemaRegistry(schema_registry_url) if schema_registry_url else None
        self.topics = topics or Topics(prefix="learnright")
        self.catalog = catalog or default_catalog()
        self._schemas = {kind: self.catalog.latest(name) for kind, name in RECORD_NAME.items()}
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        # kafka-python's accumulator has no memory cap of its own; this bounds the
        # records sent but not yet settled, and blocks the caller when full. Each entry is
        # (future, record name, event id) for one record, or (batch, record name, None) for
        # a whole batch of the bulk path, oldest first: a failure is named from it.
        self._pending: deque[tuple[Any, str, str | None]] = deque()
        self._in_flight = 0
        self._max_pending = max_pending
        self._max_block_s = max_block_ms / 1000
        self._linger_s = (producer_options.get("linger_ms", linger_ms) or 0) / 1000
        self.sent = 0
        """Records handed to the producer."""
        self.acknowledged = 0
        """Records Kafka acknowledged."""
        try:
            self._producer = KafkaProducer(**{
                **PRODUCER_SETTINGS, "bootstrap_servers": bootstrap_servers, "max_block_ms": max_block_ms,
                "linger_ms": linger_ms, "delivery_timeout_ms": delivery_timeout_ms, **producer_options,
            })
        except KafkaError as exc:
            raise BrokerError(f"cannot connect a producer to Kafka at {bootstrap_servers}: {exc}") from exc
        self.bulk_unavailable = bulk.unavailable(self._producer, self._schemas)
        """Why :meth:`send_events` sends one event at a time here, or None when it builds whole batches."""
        self._bulk = None if self.bulk_unavailable else bulk.BulkPath(
            self._producer, self.topics, self._schemas, limits, max_block_ms=max_block_ms,
            headers={kind: None if self.registry else MAGIC + schema.fingerprint for kind, schema in self._schemas.items()})
        self._registered: set[str] = set()

    def __enter__(self) -> "UsageEmitter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(raise_errors=exc_type is None)

    # -- typed entry points ---------------------------------------------------------------

    def training(self, *, model_id: str, run_id: str, source_id: str, units: int, unit: str,
                 occurred_at: datetime, event_id: str | None = None, base_model_id: str | None = None,
                 metadata: Mapping[str, str] | None = None, source_revision: str | None = None):
        """Reports that training run ``run_id`` of ``model_id`` consumed ``units`` of a source.

        ``source_revision`` (schema v2) names the copy of the source consumed, for audit.
        """
        return self.send("training", {
            "event_id": event_id or _new_id(), "model_id": model_id, "run_id": run_id, "source_id": source_id,
            "units": units, "unit": unit, "occurred_at": occurred_at, "base_model_id": base_model_id,
            "metadata": dict(metadata or {}), "source_revision": source_revision,
        })

    def inference(self, *, model_id: str, request_id: str, attributions: Iterable[tuple[str, Decimal | str]] | Mapping[str, Decimal | str],
                  occurred_at: datetime, event_id: str | None = None, output_units: int | None = None):
        """Reports an answer of ``model_id`` that drew on sources with attribution weights."""
        pairs = attributions.items() if isinstance(attributions, Mapping) else attributions
        return self.send("inference", {
            "event_id": event_id or _new_id(), "model_id": model_id, "request_id": request_id,
            "attributions": [{"source_id": s, "weight": w} for s, w in pairs],
            "occurred_at": occurred_at, "output_units": output_units,
        })

    def revenue(self, *, model_id: str, period: str, revenue: Decimal | str, currency: str,
                occurred_at: datetime, event_id: str | None = None):
        """Reports what ``model_id`` earned in ``period`` (YYYY-MM)."""
        return self.send("revenue", {
            "event_id": event_id or _new_id(), "model_id": model_id, "period": period,
            "revenue": revenue, "currency": currency, "occurred_at": occurred_at,
        })

    def correct(self, *, corrects_event_id: str, action: str, occurred_at: datetime,
                replacement_units: int | None = None,
                replacement_attributions: Mapping[str, Decimal | str] | None = None,
                reason: str = "", event_id: str | None = None):
        """Voids or replaces an earlier event of this platform; nothing is ever edited."""
        return self.send("correction", {
            "event_id": event_id or _new_id(), "corrects_event_id": corrects_event_id, "action": action,
            "replacement_units": replacement_units,
            "replacement_attributions": None if replacement_attributions is None else [
                {"source_id": s, "weight": w} for s, w in replacement_attributions.items()
            ],
            "reason": reason, "occurred_at": occurred_at,
        })

    # -- generic path ---------------------------------------------------------------------

    def send(self, kind: str, fields: Mapping[str, Any]):
        """Validates, encodes and sends one event of ``kind``; returns Kafka's future.

        Raises:
            ValidationError: the event is invalid; nothing was sent.
            DeliveryError: an earlier send failed asynchronously.
        """
        self._raise_pending()
        event = validate(RECORD_NAME[kind], {"platform_id": self.platform_id, **fields}, limits=self.limits,
                         reported_ms=time.time_ns() // 1_000_000)
        return self._send(event)

    def send_event(self, event: UsageEvent):
        """Sends an already validated event (as :func:`ledger.core.usage.validate` returns).

        Its ``occurred_at`` and its number of attributions (each source once) are checked
        against ``limits`` again, now; the rest was checked when it was built and is not
        checked twice.

        Raises:
            ValidationError: the event breaks ``limits``; nothing was sent.
        """
        self._raise_pending()
        now_ms = time.time_ns() // 1_000_000
        if not self._within_limits(event, now_ms):  # the full check, for the error that names the field
            problems = limit_problems(event, limits=self.limits, reported_ms=now_ms)
            if problems:
                raise problems[0]
        return self._send(event)

    def send_events(self, events: Iterable[UsageEvent]) -> int:
        """Sends already validated events in order, as :meth:`send_event` would one by one, in whole batches.

        The records, keys and partitions are those :meth:`send_event` sends, and each
        event's delivery is settled and any failure named as there. Events are encoded
        into record batches natively (:mod:`producers.bulk`) and handed to the producer a
        batch at a time; ``events`` is read a chunk at a time (:data:`BULK_CHUNK` events,
        or fewer once ``linger_ms`` passed since the chunk's first), so it may be a
        generator of any length. Without the native module (see :attr:`bulk_unavailable`) it calls
        :meth:`send_event` per event.

        Returns:
            The number of events handed to the producer (:attr:`sent` counts them too).

        Raises:
            ValidationError: an event breaks ``limits`` or is too large; the events before
                it were sent, it and those after it were not.
            DeliveryError: an earlier send failed asynchronously; it is checked before the
                first event and between chunks of :data:`BULK_CHUNK` events.
            TransientError: the schema registry failed; with a registry the schemas of a
                chunk's kinds are registered before any event of the chunk is sent.
        """
        self._raise_pending()
        before = self.sent
        if self._bulk is None:
            for event in events:
                self.send_event(event)
            return self.sent - before
        try:
            for chunk in bulk.chunks(events, BULK_CHUNK, self._linger_s):
                self._send_chunk(chunk)
                if len(chunk) < BULK_CHUNK:  # cut by the linger (or the last): send what is held now
                    self._hand_over(self._bulk.take(everything=True))
                self._raise_pending()
        finally:
            self._hand_over(self._bulk.take(everything=True))
        return self.sent - before

    def _send_chunk(self, chunk: list) -> None:
        path = self._bulk
        if self.registry is not None:
            self._register_kinds(chunk)
        start = 0
        while start < len(chunk):
            stop = path.add(chunk, start, path.partitions())
            self._hand_over(path.take(everything=stop < len(chunk)))
            if stop < len(chunk):  # the reference path sends it, or raises the error that names it
                self.send_event(chunk[stop])
                stop += 1
            start = stop

    def _register_kinds(self, chunk: list) -> None:
        """Registers the schema of each kind in ``chunk`` once, as :meth:`_send` would, for its Confluent header."""
        for kind in {getattr(type(event), "kind", None) for event in chunk} - self._registered:
            if kind not in self._schemas:
                continue  # not a usage event: the reference path says so
            name = RECORD_NAME[kind]
            schema_id = self.registry.register(f"{self.topics.for_event(name)}-value", self._schemas[kind])
            self._bulk.set_header(kind, b"\x00" + schema_id.to_bytes(4, "big"))
            self._registered.add(kind)

    def _hand_over(self, batches: list) -> None:
        if not batches:
            return
        try:
            for batch in batches:
                if self._in_flight + batch.count > self._max_pending and self._pending:
                    self._bulk.wake_sender()
                    self._wait_for_room(f"{batch.name} {batch.event_ids[0]}", batch.count)
                try:
                    self._bulk.hand_over(batch)
                except KafkaError as exc:
                    raise DeliveryError(f"{batch.name} {batch.event_ids[0]} and {batch.count - 1} more events could"
                                        f" not be queued for Kafka: {exc}") from exc
                self._pending.append((batch, batch.name, None))
                self._in_flight += batch.count
                self.sent += batch.count
        finally:
            self._bulk.wake_sender()

    def _within_limits(self, event: UsageEvent, now_ms: int) -> bool:
        """Whether a validated ``event`` is plainly within ``limits`` now (False: not sure)."""
        occurred_at = event.occurred_at
        if not isinstance(occurred_at, datetime) or occurred_at.utcoffset() is None:
            return False
        limits = self.limits
        if (occurred_at - _EPOCH) // _MICROSECOND > now_ms * 1000 + limits.max_future_s * 1_000_000:
            return False
        for name in ("attributions", "replacement_attributions"):
            attributions = getattr(event, name, None)
            if attributions is not None and (
                    len(attributions) > limits.max_attributions
                    or len({a.source_id for a in attributions}) != len(attributions)):
                return False
        return True

    def _send(self, event: UsageEvent):
        name = RECORD_NAME[event.kind]
        topic = self.topics.for_event(name)
        schema = self._schemas[event.kind]
        if self.registry is None:
            payload = encode(to_record(event), schema)
        else:  # may raise a registry error: nothing has been sent yet.
            payload = encode_confluent(to_record(event), schema, self.registry.register(f"{topic}-value", schema))
        too_large = oversize_problem(event, payload, f"{name} {event.event_id}")
        if too_large is not None:
            raise too_large
        if self._in_flight >= self._max_pending:
            self._wait_for_room(f"{name} {event.event_id}")
        try:
            future = self._producer.send(topic, value=payload, key=partition_key(event))
        except KafkaError as exc:
            raise DeliveryError(f"{name} {event.event_id} could not be queued for Kafka: {exc}") from exc
        self._pending.append((future, name, event.event_id))
        self._in_flight += 1
        self.sent += 1
        return future

    def _settle(self) -> None:
        """Counts the acknowledged records at the head of the pending queue, and notes each failed one by name.

        Stops at the first record not yet done, so it costs nothing per record beyond
        one look; records complete per batch, so the head moves by whole batches.
        """
        pending = self._pending
        with self._lock:
            while pending and _settled(pending[0]):
                handle, name, event_id = pending.popleft()
                if event_id is None:  # a whole batch of the bulk path
                    failed = handle.failures()
                    self._in_flight -= handle.count
                    self.acknowledged += handle.count - len(failed)
                    self._errors.extend(DeliveryError(f"{name} {failed_id} was not delivered: {type(exc).__name__}: {exc}")
                                        for failed_id, exc in failed)
                    continue
                self._in_flight -= 1
                exc = handle.exception
                if exc is None:
                    self.acknowledged += 1
                else:
                    self._errors.append(DeliveryError(f"{name} {event_id} was not delivered: {type(exc).__name__}: {exc}"))

    def _wait_for_room(self, what: str, records: int = 1) -> None:
        """Blocks until ``records`` more fit under ``max_pending`` (or nothing is pending), for at most ``max_block_ms``."""
        deadline = time.monotonic() + self._max_block_s
        self._settle()
        while self._pending and self._in_flight + records > self._max_pending:
            left = deadline - time.monotonic()
            handle, _, event_id = self._pending[0]
            try:
                if event_id is None:
                    handle.wait(max(left, 0.0))
                else:
                    handle.get(timeout=max(left, 0.0))
            except KafkaTimeoutError:
                raise DeliveryError(f"{what} not sent: the send buffer stayed full for {self._max_block_s:.0f}s"
                                    " (is the broker reachable?)") from None
            except Exception:  # a failed record: _settle notes it by name
                pass
            self._settle()

    def _raise_pending(self) -> None:
        if self._pending and _settled(self._pending[0]):
            self._settle()
        with self._lock:
            if self._errors:
                first, count = self._errors[0], len(self._errors)
                self._errors.clear()
                if count > 1:
                    raise DeliveryError(f"{first} (and {count - 1} more deliveries failed)") from first
                raise first

    def flush(self, timeout_s: float | None = None) -> None:
        """Waits until every record sent so far is acknowledged; raises the first failure."""
        try:
            self._flush_producer(timeout_s)
        except KafkaError as exc:
            self._settle()
            raise DeliveryError(f"flush did not complete: {exc}") from exc
        self._settle()
        self._raise_pending()

    def _flush_producer(self, timeout_s: float | None) -> None:
        """``KafkaProducer.flush``, again while a batch it waited on was split.

        kafka-python's flush waits on the batches incomplete when it starts; one the broker
        refuses as too large is split and never completes itself (its records move to the
        smaller batches), and flush then gives up with ``UnknownError('Future not done')``
        at once. Flushing again waits on the smaller batches.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                self._producer.flush(timeout=left)
                return
            except UnknownError as exc:
                if "Future not done" not in str(exc) or (deadline is not None and time.monotonic() >= deadline):
                    raise

    def close(self, timeout_s: float | None = 60, *, raise_errors: bool = True) -> None:
        """Flushes and closes; delivery failures are raised unless ``raise_errors`` is False."""
        try:
            self._flush_producer(timeout_s)
        except KafkaError as exc:
            self._errors.append(DeliveryError(f"flush on close did not complete: {exc}"))
        finally:
            self._producer.close(timeout=timeout_s)
            self._settle()  # records close gave up on fail here, each named
            if self.registry is not None:
                self.registry.close()
        if raise_errors:
            self._raise_pending()


BULK_CHUNK = 4096
"""Events :meth:`UsageEmitter.send_events` encodes per native call: bounds the memory of a
generator's events held at once; batches still fill up to ``batch_size`` across chunks."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _settled(entry: tuple[Any, str, str | None]) -> bool:
    """Whether a pending entry (a record's future, or a whole batch) is settled."""
    return entry[0].settled if entry[2] is None else entry[0].is_done


def _new_id() -> str:
    return uuid.uuid4().hex
