"""What the consumer tests share: drain the topics into a ledger, emit as platform orbit, stall a consumer."""

from datetime import datetime, timezone

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from consumers.service import IngestStats, LedgerConsumer
from consumers.kafka_admin import ensure_topics
from ground.settings import Settings
from ledger.storage.store import Ledger
from producers import UsageEmitter
from schemas import default_catalog, encode

POISON = b"\x7b" + b"garbage " * 512
"""4 KB that no schema decodes: its dead letter is over a 1,024-byte record limit."""


def consume_all(settings: Settings, ledger: Ledger) -> IngestStats:
    """Runs a consumer until every partition is drained; returns what it booked."""
    consumer = LedgerConsumer(settings, ledger)
    try:
        return consumer.run(until_idle=True)
    finally:
        consumer.close()


def emitter_for(settings: Settings) -> UsageEmitter:
    """An emitter for platform orbit on the test's own topics (created first)."""
    ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, settings.kafka.partitions)
    return UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=settings.kafka.topics)


def refuse_dead_letters(settings: Settings) -> None:
    """Creates the dead-letter topic with ``max.message.bytes`` 1,024 (then the usage topics): the
    broker refuses the dead letter of :data:`POISON` on every attempt, a real failure to apply."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(settings.kafka.topics.dead_letter, num_partitions=1, replication_factor=1,
                                      topic_configs={"max.message.bytes": "1024"})])
    finally:
        admin.close()
    ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, settings.kafka.partitions)


def accept_dead_letters(settings: Settings) -> None:
    """Raises the dead-letter topic's record limit back to the broker default (1,048,588 bytes)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.kafka.topics.dead_letter,
                                            configs={"max.message.bytes": "1048588"})])
    finally:
        admin.close()


def produce_poison_then_valid(settings: Settings) -> None:
    """:data:`POISON`, then a valid TrainingUsage ``after`` (src-photos, April 2026), on one partition."""
    record = {"event_id": "after", "platform_id": "orbit", "model_id": "m", "run_id": "r", "source_id": "src-photos",
              "units": 2, "unit": "items", "occurred_at": datetime(2026, 4, 10, tzinfo=timezone.utc),
              "base_model_id": None, "metadata": {}}
    valid = encode(record, default_catalog().versions("TrainingUsage")[0])
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    try:
        producer.send(settings.kafka.topics.for_event("TrainingUsage"), value=POISON, partition=0).get(timeout=60)
        producer.send(settings.kafka.topics.for_event("TrainingUsage"), value=valid, partition=0).get(timeout=60)
    finally:
        producer.close()
