"""Publishing StatementClosed events: the outbox of the monthly close.

A close stores its statements in one DuckDB transaction and publishes nothing; each
stored statement without a publication row is pending. :func:`publish_pending` runs
after that transaction committed (the CLI's ``close``, the service after each close and
on start, ``learnright statements publish``): it sends one StatementClosed event per
pending statement, keyed by statement id, waits for the broker to acknowledge each
(acks=all) and records what was acknowledged. A failure leaves the rest pending, to be
sent by the next call, so no event is lost; an event may be sent twice (a crash between
the acknowledgement and its record), and consumers deduplicate by ``statement_id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from kafka import KafkaProducer
from kafka.errors import KafkaError

from consumers.kafka_admin import ensure_topics
from ground.errors import BrokerError
from ground.settings import Settings
from ledger.storage.store import Ledger
from schemas import default_catalog, encode

RECORD = "StatementClosed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishOutcome:
    published: tuple[str, ...]
    topic: str


def statement_closed(row: tuple) -> dict:
    """The StatementClosed record of a row of :meth:`Ledger.unpublished_statements`."""
    (statement_id, period, holder_id, currency, accrued, carry_in, payable, carry_out, content_hash, document,
     created_at, signature, key_fingerprint) = row
    body = json.loads(document)
    return {
        "statement_id": statement_id, "period": period, "holder_id": holder_id,
        "holder_name": body["holder"]["name"], "currency": currency,
        "accrued": accrued, "carry_in": carry_in, "payable": payable, "carry_out": carry_out,
        "format_version": body["format_version"], "content_hash": content_hash,
        "chain_head": body["ledger"]["chain_head"], "last_entry_id": body["ledger"]["last_entry_id"],
        "signature": signature, "key_fingerprint": key_fingerprint,
        "closed_at": created_at.astimezone(timezone.utc),
    }


def publish_pending(ledger: Ledger, bootstrap_servers: str, topic: str, *, partitions: int = 1,
                    timeout_s: float = 30.0, now: datetime | None = None) -> PublishOutcome:
    """Sends a StatementClosed event for every pending statement and records each acknowledged one.

    Raises:
        BrokerError: the broker could not be reached or did not acknowledge an event; the
            events acknowledged before are recorded, the others stay pending.
    """
    pending = ledger.unpublished_statements()
    if not pending:
        return PublishOutcome(published=(), topic=topic)
    schema = default_catalog().latest(RECORD)
    ensure_topics(bootstrap_servers, (topic,), partitions)
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True, client_id="learnright-statements",
            max_block_ms=int(timeout_s * 1000), delivery_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=min(int(timeout_s * 1000), 30_000),
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot connect a producer to Kafka at {bootstrap_servers} to publish"
                          f" {len(pending)} StatementClosed events to {topic}: {exc}") from exc
    acknowledged: list[tuple[str, str, int, int]] = []
    failure: tuple[str, Exception] | None = None
    try:
        futures = []
        for row in pending:
            record = statement_closed(row)
            futures.append((row[0], producer.send(
                topic, key=row[0].encode(), value=encode(record, schema),
                headers=[("statement_id", row[0].encode()), ("record", RECORD.encode())],
            )))
        for statement_id, future in futures:
            try:
                metadata = future.get(timeout=timeout_s)
            except KafkaError as exc:
                failure = failure or (statement_id, exc)
                continue
            acknowledged.append((statement_id, topic, metadata.partition, metadata.offset))
    except KafkaError as exc:
        failure = failure or (pending[len(acknowledged)][0], exc)
    finally:
        producer.close(timeout=timeout_s)
        ledger.record_publications(acknowledged, now or datetime.now(timezone.utc))
    if failure is not None:
        raise BrokerError(
            f"StatementClosed of statement {failure[0]} was not acknowledged by Kafka at {bootstrap_servers}"
            f" (topic {topic}): {failure[1]}; {len(pending) - len(acknowledged)} events stay pending and are"
            " sent by the next publish"
        ) from failure[1]
    return PublishOutcome(published=tuple(a[0] for a in acknowledged), topic=topic)


def publish_statements(ledger: Ledger, settings: Settings, *, timeout_s: float = 30.0) -> PublishOutcome:
    """:func:`publish_pending` to the configured broker (or the project's own) and ``Topics.statements``.

    Raises:
        BrokerError: no broker is configured or running, or it did not acknowledge an event.
    """
    from learnright.runtime import bootstrap_servers

    if not ledger.unpublished_statements():
        return PublishOutcome(published=(), topic=settings.kafka.topics.statements)
    return publish_pending(ledger, bootstrap_servers(settings), settings.kafka.topics.statements,
                           partitions=settings.kafka.partitions, timeout_s=timeout_s)
