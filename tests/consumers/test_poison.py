"""Every poison kind lands in the dead-letter topic and in quarantine; the partition keeps flowing."""

import random
from datetime import datetime, timezone

import pytest
from kafka import KafkaConsumer, KafkaProducer

from ground.errors import error_classes

from consumers.dead_letter import MAX_REQUEST_BYTES, TRUNCATED, letter_size
from consumers.kafka_admin import ensure_topics
from consumers.service import LedgerConsumer
from ledger.storage.store import Ledger
from schemas import default_catalog, encode
from tests.consumers.helpers import consume_all

pytestmark = pytest.mark.broker
APRIL = datetime(2026, 4, 10, tzinfo=timezone.utc)


def training(**changes):
    record = {"event_id": "ok", "platform_id": "orbit", "model_id": "m", "run_id": "r", "source_id": "src-photos",
              "units": 2, "unit": "items", "occurred_at": APRIL, "base_model_id": None, "metadata": {}}
    return encode({**record, **changes}, default_catalog().versions("TrainingUsage")[0])


def test_each_poison_kind_is_dead_lettered_and_quarantined_in_order(make_settings, license_book_text):
    settings = make_settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"partitions": 1})})
    topics = settings.kafka.topics
    topic = topics.for_event("TrainingUsage")
    ensure_topics(settings.kafka.bootstrap_servers, (*topics.usage, topics.dead_letter), 1)
    poison = [
        ("DecodeError", b"\x7bnot avro"),
        ("UnknownSchemaError", b"\xc3\x01" + b"\x11" * 8 + b"\x00"),
        ("ValidationError", training(event_id="neg", units=-5)),
        ("UnknownSourceError", training(event_id="nosrc", source_id="src-nobody")),
        ("NoLicenseError", training(event_id="early", occurred_at=datetime(2025, 6, 1, tzinfo=timezone.utc))),
        ("PricingError", training(event_id="unit", unit="bytes")),
        ("ConflictError", training(event_id="first", units=3)),  # conflicts with "first" below
    ]
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    producer.send(topic, value=training(event_id="first"))
    for _, value in poison:
        producer.send(topic, value=value, headers=[("trace", b"t-1")])
    producer.send(topic, value=training(event_id="last"))
    producer.flush()
    producer.close()

    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        consumer = LedgerConsumer(settings, ledger)
        try:
            stats = consumer.run(until_idle=True)
        finally:
            consumer.close()
        assert (stats.records, stats.accepted, stats.quarantined) == (9, 2, 7)
        assert ledger.query("SELECT event_id FROM usage_events ORDER BY kafka_offset") == [("first",), ("last",)]
        quarantined = ledger.query("SELECT kafka_offset, error_class, reason FROM quarantine ORDER BY kafka_offset")
    assert [(offset, error) for offset, error, _ in quarantined] == [
        (offset, kind) for offset, (kind, _) in enumerate(poison, start=1)]
    assert all(reason for _, _, reason in quarantined)

    dead = KafkaConsumer(topics.dead_letter, bootstrap_servers=settings.kafka.bootstrap_servers,
                         auto_offset_reset="earliest", consumer_timeout_ms=5000)
    letters = list(dead)
    dead.close()
    assert [dict(r.headers)["learnright.error.class"].decode() for r in letters] == [kind for kind, _ in poison]
    code_of = {cls.__name__: code for code, cls in error_classes().items()}
    assert [dict(r.headers)["learnright.error.code"].decode() for r in letters] == [code_of[kind] for kind, _ in poison]
    assert [r.value for r in letters] == [value for _, value in poison]
    for offset, record in enumerate(letters, start=1):
        headers = dict(record.headers)
        assert headers["trace"] == b"t-1"
        assert headers["learnright.original.topic"] == topic.encode()
        assert headers["learnright.original.offset"] == str(offset).encode()
        assert headers["learnright.error.message"]


def test_a_record_just_under_the_broker_limit_is_quarantined_whole_and_the_next_one_booked(
        make_settings, license_book_text):
    """1,048,400 bytes of garbage: the broker takes it (message.max.bytes 1,048,588), but with the
    learnright.* headers its dead letter would pass the producer's 1,048,576-byte max_request_size.
    The letter is cut to fit and marked; the ledger keeps the record whole; the partition flows on."""
    settings = make_settings()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"partitions": 1})})
    topics = settings.kafka.topics
    topic = topics.for_event("TrainingUsage")
    ensure_topics(settings.kafka.bootstrap_servers, (*topics.usage, topics.dead_letter), 1)
    garbage = b"\x7b" + random.Random(13).randbytes(1_048_399)  # not the single-object marker: undecodable
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    producer.send(topic, key=b"k-1", value=garbage, headers=[("trace", b"t-1")]).get(timeout=60)
    producer.send(topic, value=training(event_id="after")).get(timeout=60)
    producer.close()

    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        stats = consume_all(settings, ledger)
        assert (stats.records, stats.accepted, stats.quarantined) == (2, 1, 1)
        assert ledger.query("SELECT event_id, kafka_offset FROM usage_events") == [("after", 1)]
        [(offset, code, value)] = ledger.query("SELECT kafka_offset, error_code, record_value FROM quarantine")
    assert (offset, code) == (0, "undecodable")
    assert value == garbage  # the system of record keeps every byte

    dead = KafkaConsumer(topics.dead_letter, bootstrap_servers=settings.kafka.bootstrap_servers,
                         auto_offset_reset="earliest", consumer_timeout_ms=10000)
    letters = list(dead)
    dead.close()
    [letter] = letters
    headers = dict(letter.headers)
    assert headers[TRUNCATED] == b"1048400"
    assert headers["trace"] == b"t-1" and letter.key == b"k-1"
    assert headers["learnright.original.offset"] == b"0" and headers["learnright.error.code"] == b"undecodable"
    assert 1_048_000 < len(letter.value) < len(garbage) and garbage.startswith(letter.value)
    assert letter_size(letter.key, letter.value, tuple(letter.headers)) <= MAX_REQUEST_BYTES
