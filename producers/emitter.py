"""UsageEmitter: what a training job or an inference service calls to report usage.

Guarantees:
  * Validation happens before anything is sent; an error names the field and value.
    It includes the ledger's bounds on plausible usage (``limits``, by default the
    ledger's defaults): ``occurred_at`` no more than ``max_future_s`` after now, each
    source once per answer, at most ``max_attributions`` sources per answer.
  * Delivery is acks=all with an idempotent producer and retries, so a retry never
    duplicates a record in Kafka.
  * An asynchronous delivery failure is never swallowed: it is raised by the next call
    to the emitter, by :meth:`flush` or by :meth:`close`.
  * Memory is bounded: at most ``max_pending`` records wait for acknowledgement; a
    full buffer blocks the caller (back-pressure) for at most ``max_block_ms``.
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
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Mapping

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ground.errors import BrokerError, TransientError
from ground.topics import Topics
from ledger.core.usage import DEFAULT_LIMITS, UsageEvent, UsageLimits, limit_problems, to_record, validate
from schemas import Catalog, default_catalog, encode
from schemas.registry import SchemaRegistry
from schemas.wire import encode_confluent
from producers.encoding import RECORD_NAME, oversize_problem



class DeliveryError(TransientError):
    """Kafka did not acknowledge a record; the message names the event."""

    code = "delivery_failed"


def partition_key(event: UsageEvent) -> bytes:
    """Training by source (keeps a source's usage in order); others by their subject."""
    if event.kind == "training":
        key = event.source_id
    elif event.kind == "inference":
        key = event.attributions[0].source_id
    elif event.kind == "revenue":
        key = event.model_id
    else:
        key = event.corrects_event_id
    return key.encode()


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
        linger_ms: int = 5,
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
        # records sent but not yet acknowledged, and blocks the caller when full.
        self._pending = threading.BoundedSemaphore(max_pending)
        self._max_block_s = max_block_ms / 1000
        self.sent = 0
        """Records handed to the producer."""
        self.acknowledged = 0
        """Records Kafka acknowledged."""
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_servers,
                acks="all",
                enable_idempotence=True,
                retries=2_147_483_647,
                max_in_flight_requests_per_connection=5,
                max_block_ms=max_block_ms,
                linger_ms=linger_ms,
                delivery_timeout_ms=delivery_timeout_ms,
                **producer_options,
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot connect a producer to Kafka at {bootstrap_servers}: {exc}") from exc

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

        Its ``occurred_at`` and attributions are checked against ``limits`` again, now.

        Raises:
            ValidationError: the event breaks ``limits``; nothing was sent.
        """
        self._raise_pending()
        problems = limit_problems(event, limits=self.limits, reported_ms=time.time_ns() // 1_000_000)
        if problems:
            raise problems[0]
        return self._send(event)

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
        if not self._pending.acquire(timeout=self._max_block_s):
            raise DeliveryError(
                f"{name} {event.event_id} not sent: the send buffer stayed full for {self._max_block_s:.0f}s"
                " (is the broker reachable?)"
            )
        try:
            future = self._producer.send(topic, value=payload, key=partition_key(event))
        except KafkaError as exc:
            self._pending.release()
            raise DeliveryError(f"{name} {event.event_id} could not be queued for Kafka: {exc}") from exc
        future.add_callback(self._delivered)
        future.add_errback(self._failed, name, event.event_id)
        self.sent += 1
        return future

    def _delivered(self, _metadata: object) -> None:
        self._pending.release()
        self.acknowledged += 1  # only kafka-python's sender thread runs this callback

    def _failed(self, name: str, event_id: str, exc: BaseException) -> None:
        # kafka-python calls errbacks as f(*args_given_to_add_errback, exception).
        self._pending.release()
        with self._lock:
            self._errors.append(DeliveryError(f"{name} {event_id} was not delivered: {type(exc).__name__}: {exc}"))

    def _raise_pending(self) -> None:
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
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise DeliveryError(f"flush did not complete: {exc}") from exc
        self._raise_pending()

    def close(self, timeout_s: float | None = 60, *, raise_errors: bool = True) -> None:
        """Flushes and closes; delivery failures are raised unless ``raise_errors`` is False."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            self._errors.append(DeliveryError(f"flush on close did not complete: {exc}"))
        finally:
            self._producer.close(timeout=timeout_s)
            if self.registry is not None:
                self.registry.close()
        if raise_errors:
            self._raise_pending()


def _new_id() -> str:
    return uuid.uuid4().hex
