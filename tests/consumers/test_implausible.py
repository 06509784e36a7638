"""Implausible usage is quarantined, not booked, on the real broker (issue 13, item 2).

A record dated in the year 9999, one answer naming a source 10,000 times, one naming a
source twice and one over the limit of sources are each quarantined with their reason
and code, while a valid record after them is booked; with the native fast path on and
off. The usage topics stamp records with the broker's clock (LogAppendTime), so a
producer cannot move the bound on ``occurred_at`` by choosing its records' timestamps.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from consumers.batch import usage_limits
from consumers.kafka_admin import ensure_topics
from consumers.replay import replay_quarantine
from consumers.service import LedgerConsumer
from ledger.storage.store import Ledger
from schemas import default_catalog, encode

pytestmark = pytest.mark.broker
APRIL = datetime(2026, 4, 10, tzinfo=timezone.utc)
SPOOFED = datetime(2030, 1, 1, tzinfo=timezone.utc)


def answer(event_id: str, sources: list[str], weight: str = "0.00001", occurred_at: datetime = APRIL) -> bytes:
    return encode({"event_id": event_id, "platform_id": "orbit", "model_id": "m", "request_id": "q",
                   "occurred_at": occurred_at, "output_units": None,
                   "attributions": [{"source_id": s, "weight": Decimal(weight)} for s in sources]},
                  default_catalog().latest("InferenceUsage"))


# (event id, value, producer's timestamp or None, code, words of the reason)
IMPLAUSIBLE = [
    ("far", answer("far", ["src-photos"], occurred_at=datetime(9999, 12, 31, tzinfo=timezone.utc)), None,
     "occurred_in_future", "occurred_at is more than 3600 s after the event was reported at"),
    ("repeated", answer("repeated", ["src-photos"] * 10_000), None,
     "too_many_attributions", "attributions must name at most 256 sources in one answer (got '10000 sources')"),
    ("twice", answer("twice", ["src-photos", "src-novels", "src-photos"]), None,
     "invalid_value", "attributions[2].source_id repeats attributions[0].source_id; an answer names each source once"
                      " (got 'src-photos')"),
    ("many", answer("many", [f"src-{n}" for n in range(257)], weight="0.000001"), None,
     "too_many_attributions", "attributions must name at most 256 sources in one answer (got '257 sources')"),
    ("spoofed", answer("spoofed", ["src-photos"], occurred_at=SPOOFED), int(SPOOFED.timestamp() * 1000),
     "occurred_in_future", "2030-01-01T00:00:00+00:00"),  # the broker's time, not the producer's, bounds it
]


def topic_configs(bootstrap: str, topic: str) -> dict:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    finally:
        admin.close()
    return {key: entry["value"] for key, entry in described["topic"][topic].items()}


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_implausible_usage_is_quarantined_with_its_reason_and_a_valid_record_after_it_is_booked(
        make_settings, license_book_text, native):
    settings = make_settings(native=native)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"partitions": 1})})
    topics = settings.kafka.topics
    topic = topics.for_event("InferenceUsage")
    ensure_topics(settings.kafka.bootstrap_servers, (*topics.usage, topics.dead_letter), 1)
    assert topic_configs(settings.kafka.bootstrap_servers, topic)["message.timestamp.type"] == "LogAppendTime"

    sent_ms = time.time_ns() // 1_000_000
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    for _, value, timestamp_ms, _, _ in IMPLAUSIBLE:
        producer.send(topic, value=value, timestamp_ms=timestamp_ms)
    producer.send(topic, value=answer("ok", ["src-photos", "src-novels"], weight="0.5"))
    producer.flush()
    producer.close()

    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        consumer = LedgerConsumer(settings, ledger)
        try:
            assert consumer.native is native
            stats = consumer.run(until_idle=True)
        finally:
            consumer.close()
        assert (stats.records, stats.accepted, stats.quarantined) == (6, 1, 5)
        assert ledger.query("SELECT event_id, period FROM usage_events") == [("ok", "2026-04")]
        assert ledger.query("SELECT count(*), min(period), max(period) FROM accruals") == [(2, "2026-04", "2026-04")]
        rows = ledger.query("SELECT kafka_offset, error_code, reason, record_timestamp FROM quarantine"
                            " ORDER BY kafka_offset")
        assert [(offset, code) for offset, code, _, _ in rows] == [
            (offset, code) for offset, (_, _, _, code, _) in enumerate(IMPLAUSIBLE)]
        for (offset, _, reason, stamp), (_, _, _, _, words) in zip(rows, IMPLAUSIBLE):
            assert words in reason and reason.endswith(f"in {topic}[0]@{offset}"), reason
            assert stamp >= sent_ms - 60_000  # the broker's append time, kept for replay
        assert rows[-1][3] < int(SPOOFED.timestamp() * 1000)  # not the timestamp the producer chose

        replayed = replay_quarantine(ledger, limits=usage_limits(settings.consumer))
        assert (replayed.attempted, replayed.booked) == (5, 0)
        assert [s.error_code for s in replayed.still_quarantined] == [code for _, _, _, code, _ in IMPLAUSIBLE]
