"""Fixtures of the producer tests: topics on the real broker, and reading them back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from kafka import KafkaConsumer, TopicPartition

from consumers.kafka_admin import ensure_topics
from ground.settings import Settings
from schemas import decode


@dataclass(frozen=True, slots=True, kw_only=True)
class Landed:
    """One record as it sits on a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    name: str
    record: dict


def read_topics(bootstrap_servers: str, topics: tuple[str, ...], registry=None) -> list[Landed]:
    """Every record now on ``topics``, decoded, in (topic, partition, offset) order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=2000)
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not partitions:
            return []  # no topic was ever created: nothing was sent
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        landed: list[Landed] = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for r in records:
                    name, record = decode(r.value, registry=registry)
                    landed.append(Landed(topic=r.topic, partition=r.partition, offset=r.offset,
                                         key=r.key, value=r.value, name=name, record=record))
        return sorted(landed, key=lambda r: (r.topic, r.partition, r.offset))
    finally:
        consumer.close()


@pytest.fixture
def usage_settings(make_settings) -> Settings:
    """Settings with this test's own usage topics, already created on the session broker."""
    settings = make_settings()
    ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, settings.kafka.partitions)
    return settings


@pytest.fixture
def landed(usage_settings: Settings):
    """``landed()``: every record on this test's usage topics."""
    return lambda: read_topics(usage_settings.kafka.bootstrap_servers, usage_settings.kafka.topics.usage)
