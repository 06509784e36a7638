"""End to end on the real broker: emit, consume, price, and what cannot be priced."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from kafka import KafkaConsumer, KafkaProducer

from ledger.storage.store import Ledger
from producers import UsageEmitter
from tests.consumers.helpers import consume_all

pytestmark = pytest.mark.broker
APRIL = datetime(2026, 4, 10, 8, 30, tzinfo=timezone.utc)


def test_n_events_through_the_broker_become_n_accruals_with_the_hand_computed_total(make_settings, license_book_text):
    settings = make_settings()
    n = 60
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        with UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=settings.kafka.topics) as emitter:
            from consumers.kafka_admin import ensure_topics
            ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, 2)
            for i in range(n // 2):
                # 1M tokens x (i + 1) at 0.80 USD per 1M (version 1 in force in April? no: v2 from 15 March).
                emitter.training(event_id=f"t{i}", model_id="m1", run_id="r1", source_id="src-novels",
                                 units=1_000_000 * (i + 1), unit="tokens", occurred_at=APRIL)
                # One answer drawing half on the novels: 0.003 x 0.5 USD.
                emitter.inference(event_id=f"i{i}", model_id="m1", request_id=f"q{i}",
                                  attributions={"src-novels": "0.5"}, occurred_at=APRIL)
        stats = consume_all(settings, ledger)
        assert (stats.records, stats.accepted, stats.quarantined) == (n, n, 0)
        count, total = ledger.query("SELECT count(*), sum(amount) FROM accruals")[0]
    # By hand: training 1.20 x (1 + 2 + ... + 30) = 1.20 x 465 = 558.00; inference 30 x 0.0015 = 0.045.
    assert count == n
    assert total == Decimal("558.045")


def test_consuming_twice_adds_nothing(make_settings, license_book_text):
    settings = make_settings()
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        with UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=settings.kafka.topics) as emitter:
            from consumers.kafka_admin import ensure_topics
            ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, 2)
            for i in range(10):
                emitter.training(event_id=f"t{i}", model_id="m", run_id="r", source_id="src-photos",
                                 units=3, unit="items", occurred_at=APRIL)
            # A redelivered identical event (a producer retry after a lost ack, say).
            emitter.training(event_id="t0", model_id="m", run_id="r", source_id="src-photos",
                             units=3, unit="items", occurred_at=APRIL)
        first = consume_all(settings, ledger)
        second = consume_all(settings, ledger)
        assert (first.accepted, first.duplicates, second.records) == (10, 1, 0)
        assert ledger.query("SELECT count(*), sum(amount) FROM accruals")[0] == (10, Decimal("150"))


def test_poison_is_quarantined_and_dead_lettered_while_the_partition_flows(make_settings, license_book_text):
    settings = make_settings()
    topics = settings.kafka.topics
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        with UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=topics) as emitter:
            from consumers.kafka_admin import ensure_topics
            ensure_topics(settings.kafka.bootstrap_servers, (*topics.usage, topics.dead_letter), 1)
            emitter.training(event_id="ok1", model_id="m", run_id="r", source_id="src-photos", units=1,
                             unit="items", occurred_at=APRIL)
            emitter.training(event_id="nolicense", model_id="m", run_id="r", source_id="src-unknown", units=1,
                             unit="items", occurred_at=APRIL)
            raw = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
            raw.send(topics.for_event("TrainingUsage"), key=b"src-photos", value=b"not avro at all").get(30)
            raw.close()
            emitter.training(event_id="ok2", model_id="m", run_id="r", source_id="src-photos", units=2,
                             unit="items", occurred_at=APRIL)
        stats = consume_all(settings, ledger)
        assert (stats.records, stats.accepted, stats.quarantined) == (4, 2, 2)
        reasons = dict(ledger.query("SELECT error_class, reason FROM quarantine ORDER BY kafka_offset"))
        assert "src-unknown" in reasons["UnknownSourceError"]
        assert "not Avro single-object encoded" in reasons["DecodeError"]
    dead = KafkaConsumer(topics.dead_letter, bootstrap_servers=settings.kafka.bootstrap_servers,
                         auto_offset_reset="earliest", consumer_timeout_ms=5000)
    records = list(dead)
    dead.close()
    assert len(records) == 2
    by_class = {dict(r.headers)["learnright.error.class"]: r for r in records}
    garbage = by_class[b"DecodeError"]
    assert garbage.value == b"not avro at all"
    assert dict(garbage.headers)["learnright.original.topic"] == topics.for_event("TrainingUsage").encode()
    assert b"src-unknown" in dict(by_class[b"UnknownSourceError"].headers)["learnright.error.message"]


def test_fine_tune_lineage_is_recorded_from_training_events(make_settings, license_book_text):
    settings = make_settings()
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        with UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=settings.kafka.topics) as emitter:
            from consumers.kafka_admin import ensure_topics
            ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, 2)
            emitter.training(event_id="ft1", model_id="m1-legal", base_model_id="m1", run_id="ft-run",
                             source_id="src-novels", units=1_000, unit="tokens", occurred_at=APRIL)
        consume_all(settings, ledger)
        assert ledger.model_lineage() == {("orbit", "m1-legal"): "m1"}


def test_confluent_framed_records_are_booked_when_a_registry_is_configured(make_settings, license_book_text):
    from tests.schemas.registry_stub import RegistryStub

    with RegistryStub() as stub:
        settings = make_settings().model_copy(update={"schema_registry_url": stub.url})
        with Ledger.open(settings.db) as ledger:
            ledger.apply_licenses(license_book_text, "book.toml")
            from consumers.kafka_admin import ensure_topics
            ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, 2)
            with UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=settings.kafka.topics,
                              schema_registry_url=stub.url) as emitter:
                emitter.training(event_id="cf1", model_id="m", run_id="r", source_id="src-photos", units=2,
                                 unit="items", occurred_at=APRIL)
            stats = consume_all(settings, ledger)
            assert (stats.accepted, stats.quarantined) == (1, 0)
            assert ledger.query("SELECT sum(amount) FROM accruals")[0][0] == Decimal(10)


def test_compressed_and_plain_fetches_book_the_same_with_the_native_path_on_or_off(make_settings, license_book_text):
    """gzip batches go through kafka-python's reader, plain ones through the native one."""
    from consumers.kafka_admin import ensure_topics
    from schemas import default_catalog, encode

    settings = make_settings(max_batch=50)
    topics = settings.kafka.topics
    ensure_topics(settings.kafka.bootstrap_servers, (*topics.usage, topics.dead_letter), 2)
    schema = default_catalog().latest("InferenceUsage")
    for compression in (None, "gzip"):
        producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, compression_type=compression,
                                 linger_ms=20)
        for i in range(200):
            record = {"event_id": f"{compression}-{i}", "platform_id": "orbit", "model_id": "m", "request_id": f"q{i}",
                      "occurred_at": APRIL, "output_units": None,
                      "attributions": [{"source_id": "src-novels", "weight": Decimal("0.25")},
                                       {"source_id": "src-photos", "weight": Decimal("0.5")}]}
            producer.send(topics.for_event("InferenceUsage"), key=b"k%d" % i, value=encode(record, schema))
        producer.send(topics.for_event("InferenceUsage"), value=b"poison")
        producer.flush()
        producer.close()
    tables = []
    for native in (True, False):
        run = settings.model_copy(update={
            "db": settings.db.with_name(f"native-{native}.duckdb"),
            "consumer": settings.consumer.model_copy(update={"native": native, "group_id": f"{settings.consumer.group_id}-{native}"}),
        })
        with Ledger.open(run.db) as ledger:
            ledger.apply_licenses(license_book_text, "book.toml")
            stats = consume_all(run, ledger)
            assert (stats.records, stats.accepted, stats.quarantined) == (402, 400, 2)
            tables.append((
                ledger.query("SELECT * EXCLUDE (batch_id) FROM usage_events ORDER BY ALL"),
                ledger.query("SELECT * EXCLUDE (entry_id, entry_hash, batch_id) FROM accruals ORDER BY ALL"),
                ledger.query("SELECT kafka_partition, kafka_offset, error_class FROM quarantine ORDER BY ALL"),
                ledger.query("SELECT currency, sum(amount) FROM accruals GROUP BY ALL ORDER BY ALL"),
            ))
    assert tables[0] == tables[1]
    # By hand: 400 answers x (0.25 x 0.003 USD) = 0.3 USD and x (0.5 x 1 JPY) = 200 JPY.
    assert tables[0][3] == [("JPY", Decimal("200")), ("USD", Decimal("0.3"))]


def test_caught_up_only_once_every_record_kafka_held_at_the_last_fetch_is_polled(make_settings):
    """What lets a consumer that keeps up write a batch at once instead of after the flush interval."""
    from uuid import uuid4

    from kafka import TopicPartition

    from consumers.kafka_admin import ensure_topics
    from consumers.service import caught_up

    settings = make_settings()
    bootstrap = settings.kafka.bootstrap_servers
    topic = f"{settings.kafka.topic_prefix}-caught-up"
    ensure_topics(bootstrap, (topic,), 2)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(10):
        producer.send(topic, b"x", partition=i % 2)
    producer.flush()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"g{uuid4().hex[:8]}", enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        assert not caught_up(consumer)  # nothing fetched yet: no high-water mark known
        polled = 0
        while polled < 10:
            polled += sum(len(records) for records in consumer.poll(timeout_ms=1000, max_records=3).values())
            assert caught_up(consumer) == (polled == 10), polled
        producer.send(topic, b"y", partition=0)
        producer.flush()
        while not consumer.poll(timeout_ms=1000):
            pass
        assert caught_up(consumer)
    finally:
        consumer.close()
        producer.close()
