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
from typing import Callable

from kafka import KafkaProducer
from kafka.errors import KafkaError

from consumers.kafka_admin import ensure_topics
from ground.errors import BrokerError
from ground.settings import Settings
from ledger.core.port import LedgerStore
from ledger.core.records import Publication, StatementRecord
from ledger.core.statements import ledger_section
from schemas import default_catalog, encode

RECORD = "StatementClosed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishOutcome:
    published: tuple[str, ...]
    topic: str


def statement_closed(stored: StatementRecord) -> dict:
    """The StatementClosed record of a stored statement (see :meth:`LedgerStore.unpublished_statements`).

    A statement of format 5 on carries a close root: it is sent as ``close_root`` and, for
    readers of StatementClosed v1 (which requires them), again as ``chain_head``, with
    ``last_entry_id`` 0. An older statement sends its chain head and last entry, and no
    close root (docs/events.md, "StatementClosed").
    """
    body = json.loads(stored.document)
    ledger = ledger_section(body)
    if ledger.close_root is not None:
        commitment = {"chain_head": ledger.close_root, "last_entry_id": 0, "close_root": ledger.close_root}
    else:
        commitment = {"chain_head": ledger.chain_head, "last_entry_id": ledger.last_entry_id, "close_root": None}
    return {
        "statement_id": stored.statement_id, "period": stored.period, "holder_id": stored.holder_id,
        "holder_name": body["holder"]["name"], "currency": stored.currency,
        "accrued": stored.accrued, "carry_in": stored.carry_in, "payable": stored.payable,
        "carry_out": stored.carry_out, "format_version": body["format_version"], "content_hash": stored.content_hash,
        **commitment,
        "signature": stored.signature, "key_fingerprint": stored.key_fingerprint,
        "closed_at": stored.created_at.astimezone(timezone.utc),
    }


def publish_pending(ledger: LedgerStore, bootstrap_servers: str, topic: str, *, partitions: int = 1,
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
    acknowledged: list[Publication] = []
    failed_id: str | None = None  # the first statement not acknowledged, and why
    failure: Exception | None = None
    try:
        futures = []
        for stored in pending:
            statement_id = stored.statement_id
            futures.append((statement_id, producer.send(
                topic, key=statement_id.encode(), value=encode(statement_closed(stored), schema),
                headers=[("statement_id", statement_id.encode()), ("record", RECORD.encode())],
            )))
        for statement_id, future in futures:
            try:
                metadata = future.get(timeout=timeout_s)
            except KafkaError as exc:
                if failure is None:
                    failed_id, failure = statement_id, exc
                continue
            acknowledged.append(Publication(statement_id=statement_id, topic=topic, partition=metadata.partition,
                                            offset=metadata.offset))
    except KafkaError as exc:
        if failure is None:
            failed_id, failure = pending[len(acknowledged)].statement_id, exc
    finally:
        producer.close(timeout=timeout_s)
        ledger.record_publications(acknowledged, now or datetime.now(timezone.utc))
    if failure is not None:
        raise BrokerError(
            f"StatementClosed of statement {failed_id} was not acknowledged by Kafka at {bootstrap_servers}"
            f" (topic {topic}): {failure}; {len(pending) - len(acknowledged)} events stay pending and are"
            " sent by the next publish"
        ) from failure
    return PublishOutcome(published=tuple(a.statement_id for a in acknowledged), topic=topic)


def publish_statements(ledger: LedgerStore, settings: Settings, *, timeout_s: float = 30.0,
                       bootstrap: Callable[[Settings], str] | None = None) -> PublishOutcome:
    """:func:`publish_pending` to the configured broker and ``Topics.statements``.

    Args:
        bootstrap: finds the broker when one is needed (the shells pass the lookup of the
            project's own running broker); by default ``settings.kafka.bootstrap_servers``.

    Raises:
        BrokerError: no broker is configured or running, or it did not acknowledge an event.
    """
    if not ledger.unpublished_statements():
        return PublishOutcome(published=(), topic=settings.kafka.topics.statements)
    servers = (bootstrap or _configured_servers)(settings)
    return publish_pending(ledger, servers, settings.kafka.topics.statements,
                           partitions=settings.kafka.partitions, timeout_s=timeout_s)


def _configured_servers(settings: Settings) -> str:
    if not settings.kafka.bootstrap_servers:
        raise BrokerError("no Kafka broker configured to publish StatementClosed events:"
                          " set KAFKA_BOOTSTRAP_SERVERS (or LEARNRIGHT_KAFKA__BOOTSTRAP_SERVERS)")
    return settings.kafka.bootstrap_servers
