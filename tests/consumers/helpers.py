"""What the consumer tests share: drain the topics into a ledger, emit as platform orbit."""

from consumers.service import IngestStats, LedgerConsumer
from consumers.kafka_admin import ensure_topics
from ground.settings import Settings
from ledger.storage.store import Ledger
from producers import UsageEmitter


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
