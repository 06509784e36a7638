"""The emitter's bulk path sends what the per-event path sends: same bytes, keys, partitions, order, errors."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from fastavro._logical_writers_py import prepare_bytes_decimal
from kafka.partitioner.default import murmur2
from kafka.record.memory_records import MemoryRecords

from ground.errors import TransientError, ValidationError
from ledger.core.usage import (Attribution, InferenceUsage, RevenueReport, TrainingUsage, UsageCorrection,
                               UsageLimits)
from producers import DeliveryError, UsageEmitter
from producers.bulk import KINDS, native, records_builder
from producers.emitter import partition_key
from producers.encoding import RECORD_NAME, encode_event
from producers.synthetic import month_usage
from schemas import default_catalog
from schemas.wire import MAGIC, encode_confluent
from tests.producers.conftest import read_topics

pytestmark = pytest.mark.skipif(native is None or not hasattr(native, "UsageBatcher"),
                                reason="the native module is not built (make setup)")

NOW = datetime(2026, 10, 3, 12, 0, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def synthetic(count: int, seed: int = 3) -> list:
    return list(month_usage(period="2026-10", platforms=("orbit", "nimbus"),
                            training_units={"src-novels": "tokens", "src-photos": "items"},
                            inference_sources=("src-novels", "src-photos", "src-poems"), events=count, seed=seed))


def unusual() -> list:
    """Events of every kind with every optional field, non-ASCII text and decimals of every shape."""
    at = NOW.astimezone(timezone(timedelta(hours=-5)))  # aware, not UTC
    return [
        TrainingUsage(event_id="t-ü", platform_id="orbit", model_id="m/ß", run_id="r", source_id="src-novels",
                      units=2**62, unit="tokens", occurred_at=at, base_model_id="base-7b",
                      metadata={"team": "λ", "": "empty key", "k": ""}, source_revision="snap-2026-09"),
        TrainingUsage(event_id="t-plain", platform_id="nimbus", model_id="m", run_id="r", source_id="src-photos",
                      units=1, unit="items", occurred_at=EPOCH + timedelta(microseconds=1)),
        InferenceUsage(event_id="i-many", platform_id="orbit", model_id="m", request_id="q" * 300, occurred_at=NOW,
                       attributions=tuple(Attribution(source_id=f"s{n}", weight=Decimal(w)) for n, w in
                                          enumerate(["0.1", "0.000001", "0.100000", "1E-2", "0.25"])),
                       output_units=None),
        InferenceUsage(event_id="i-one", platform_id="orbit", model_id="m", request_id="q", occurred_at=NOW,
                       attributions=(Attribution(source_id="src-novels", weight=Decimal("1")),), output_units=2**40),
        RevenueReport(event_id="r-1", platform_id="orbit", model_id="m", period="2026-09",
                      revenue=Decimal("123456789012345678901234.123456"), currency="USD", occurred_at=NOW),
        RevenueReport(event_id="r-0", platform_id="orbit", model_id="m", period="2026-09", revenue=Decimal("-0"),
                      currency="JPY", occurred_at=NOW),
        RevenueReport(event_id="r-e", platform_id="orbit", model_id="m", period="2026-09", revenue=Decimal("1E+3"),
                      currency="EUR", occurred_at=NOW),
        UsageCorrection(event_id="c-void", platform_id="orbit", corrects_event_id="t-ü", action="VOID",
                        occurred_at=NOW),
        UsageCorrection(event_id="c-units", platform_id="orbit", corrects_event_id="t-plain", action="REPLACE",
                        replacement_units=7, reason="miscounted", occurred_at=NOW),
        UsageCorrection(event_id="c-attr", platform_id="nimbus", corrects_event_id="i-one", action="REPLACE",
                        replacement_attributions=(Attribution(source_id="a", weight=Decimal("0.5")),
                                                  Attribution(source_id="b", weight=Decimal("0.125"))),
                        occurred_at=NOW),
    ]


def batcher(*, partitions_of=None, headers=None, batch_size=512 * 1024, limits=UsageLimits()):
    from ledger.core.usage import EVENT_CLASSES
    from producers.encoding import MAX_EVENT_BYTES

    catalog = default_catalog()
    if headers is None:
        headers = [MAGIC + catalog.latest(RECORD_NAME[kind]).fingerprint for kind in KINDS]
    return native.UsageBatcher(
        classes=[EVENT_CLASSES[RECORD_NAME[kind]] for kind in KINDS], headers=headers, topic_of=[0, 1, 2, 3],
        batch_size=batch_size, max_event_bytes=MAX_EVENT_BYTES, max_future_s=limits.max_future_s,
        max_attributions=limits.max_attributions, datetime=datetime, decimal=Decimal, epoch=EPOCH, microsecond=timedelta(microseconds=1))


def records_of(built) -> list[tuple[int, int, bytes, bytes, str]]:
    """(topic index, partition, key, value, event id) of every record of the batches, in batch order."""
    out = []
    for topic, partition, data, count, first_ts, max_ts, _, ids in built:
        records = records_builder(data, count, first_ts, max_ts, compression=0, batch_size=512 * 1024)
        records.close()
        batch = next(iter(MemoryRecords(bytes(records.buffer()))))
        batch.validate_crc()
        read = list(batch)
        assert [r.offset for r in read] == list(range(count)) and len(ids) == count
        out.extend((topic, partition, r.key, r.value, event_id) for r, event_id in zip(read, ids))
    return out


def test_murmur2_is_kafka_pythons():
    rng = random.Random(1)
    keys = [b"", b"a", b"ab", b"abc", "orbit/ü".encode()] + [rng.randbytes(rng.randrange(64)) for _ in range(3000)]
    assert [native.kafka_murmur2(k) for k in keys] == [murmur2(k) for k in keys]


@pytest.mark.parametrize("precision", [7, 30])
def test_decimals_are_fastavros_bytes_or_left_to_fastavro(precision):
    rng = random.Random(precision)
    shown = ["0", "-0", "0.000", "1", "0.7", "0.700", "1E+2", "1E-6", "1E-7", "12345.678901", "-1843.20", "NaN",
             "Infinity", "1E+40", "99999999999999999999999999999999.9", "0.0000001"]
    shown += [str(Decimal(rng.randrange(-10**12, 10**12)).scaleb(-rng.randrange(0, 9))) for _ in range(2000)]
    for text in shown:
        try:
            expected = prepare_bytes_decimal(Decimal(text), {"precision": precision, "scale": 6})
        except (ValueError, TypeError, OverflowError):
            expected = None
        got = native.avro_decimal(text, precision)
        assert got == expected or (got is None and expected is not None and len(expected) > 16), text


def test_batches_hold_the_bytes_keys_and_partitions_of_the_reference_path():
    catalog = default_catalog()
    events = unusual() + synthetic(3000)
    partitions = [2, 3, 1, 2]
    made = batcher(batch_size=16 * 1024)  # small batches: many per partition
    assert made.add(events, 0, partitions, 1_800_000_000_000) == len(events)
    got = records_of(made.take(True))
    assert made.held == 0
    by_id = {event.event_id: event for event in events}
    assert sorted(r[4] for r in got) == sorted(by_id)
    for topic, partition, key, value, event_id in got:
        event = by_id[event_id]
        assert KINDS[topic] == event.kind
        assert value == encode_event(event, catalog), event_id
        assert key == partition_key(event)
        assert partition == (murmur2(key) & 0x7FFFFFFF) % partitions[topic]
    for slot in {(r[0], r[1]) for r in got}:  # each partition in the order the events were given
        order = [r[4] for r in got if (r[0], r[1]) == slot]
        assert order == sorted(order, key=[e.event_id for e in events].index)


def test_confluent_headers_are_written_as_the_registry_path_writes_them():
    catalog = default_catalog()
    made = batcher(headers=[b"\x00" + n.to_bytes(4, "big") for n in (7, 8, 9, 10)])
    events = unusual()
    assert made.add(events, 0, [1, 1, 1, 1], 1_800_000_000_000) == len(events)
    by_id = {event.event_id: event for event in events}
    for topic, _, _, value, event_id in records_of(made.take(True)):
        from ledger.core.usage import to_record
        event = by_id[event_id]
        assert value == encode_confluent(to_record(event), catalog.latest(RECORD_NAME[event.kind]), 7 + topic)


UNSURE = [
    ("naive occurred_at", lambda e: TrainingUsage(**{**_fields(e), "occurred_at": datetime(2026, 10, 3)})),
    ("beyond max_future_s", lambda e: TrainingUsage(**{**_fields(e), "occurred_at": datetime(2027, 1, 1, tzinfo=timezone.utc)})),
    ("units past a long", lambda e: TrainingUsage(**{**_fields(e), "units": 2**63})),
    ("float units", lambda e: TrainingUsage(**{**_fields(e), "units": 2.0})),
    ("metadata not a dict", lambda e: TrainingUsage(**{**_fields(e), "metadata": (("a", "b"),)})),
    ("a source twice", lambda e: InferenceUsage(event_id="x", platform_id="p", model_id="m", request_id="q", occurred_at=NOW,
                                                attributions=(Attribution(source_id="a", weight=Decimal("0.1")),) * 2)),
    ("too many sources", lambda e: InferenceUsage(event_id="x", platform_id="p", model_id="m", request_id="q", occurred_at=NOW,
                                                  attributions=tuple(Attribution(source_id=f"s{n}", weight=Decimal("0.001"))
                                                                     for n in range(257)))),
    ("a weight of 7 places", lambda e: InferenceUsage(event_id="x", platform_id="p", model_id="m", request_id="q", occurred_at=NOW,
                                                      attributions=(Attribution(source_id="a", weight=Decimal("0.0000001")),))),
    ("a float weight", lambda e: InferenceUsage(event_id="x", platform_id="p", model_id="m", request_id="q", occurred_at=NOW,
                                                attributions=(Attribution(source_id="a", weight=0.5),))),
    ("an unknown action", lambda e: UsageCorrection(event_id="x", platform_id="p", corrects_event_id="y", action="UNDO",
                                                    occurred_at=NOW)),
    ("larger than a record may be", lambda e: TrainingUsage(**{**_fields(e), "metadata": {"blob": "x" * 1_000_001}})),
    ("not a usage event", lambda e: {"event_id": "x"}),
]


def _fields(event: TrainingUsage) -> dict:
    return {name: getattr(event, name) for name in TrainingUsage.__dataclass_fields__}


@pytest.mark.parametrize(("case", "make"), UNSURE, ids=[c[0] for c in UNSURE])
def test_an_event_the_native_path_is_not_sure_of_stops_it_there(case, make):
    good = unusual()[1]
    made = batcher()
    events = [good, make(good), good]
    assert made.add(events, 0, [1, 1, 1, 1], int(NOW.timestamp() * 1000)) == 1
    assert made.held == 1
    assert made.add(events, 2, [1, 1, 1, 1], int(NOW.timestamp() * 1000)) == 3


def test_a_topic_without_metadata_stops_the_native_path_at_its_first_event():
    made = batcher()
    events = unusual()
    assert made.add(events, 0, [1, 0, 1, 1], 1_800_000_000_000) == 2  # the first inference event


# -- on the broker ---------------------------------------------------------------------------

def emitter_for(settings, **options) -> UsageEmitter:
    return UsageEmitter(settings.kafka.bootstrap_servers, topics=settings.kafka.topics, **options)


def landed_shape(records) -> list:
    """What two producers must agree on: topic suffix, partition, offset, key and value of each record."""
    return [(r.topic.split(".", 1)[1], r.partition, r.offset, r.key, r.value) for r in records]


@pytest.mark.broker
def test_send_events_lands_what_send_event_lands(make_settings, usage_settings, landed):
    from consumers.kafka_admin import ensure_topics

    events = unusual() + synthetic(2500)
    reference = make_settings()
    ensure_topics(reference.kafka.bootstrap_servers, reference.kafka.topics.usage, reference.kafka.partitions)
    with emitter_for(reference) as one_by_one:
        for event in events:
            one_by_one.send_event(event)
    with emitter_for(usage_settings) as emitter:
        assert emitter.bulk_unavailable is None
        assert emitter.send_events(iter(events)) == len(events)
        emitter.flush()
        assert (emitter.sent, emitter.acknowledged) == (len(events), len(events))
    bulk = landed()
    assert landed_shape(bulk) == landed_shape(read_topics(reference.kafka.bootstrap_servers, reference.kafka.topics.usage))
    assert Counter(r.record["event_id"] for r in bulk) == Counter(e.event_id for e in events)


@pytest.mark.broker
def test_send_events_stops_at_an_implausible_event_having_sent_those_before_it(usage_settings, landed):
    good = synthetic(5)
    late = TrainingUsage(**{**_fields(unusual()[1]), "event_id": "from-the-future",
                            "occurred_at": datetime.now(timezone.utc) + timedelta(days=2)})
    with emitter_for(usage_settings) as emitter:
        with pytest.raises(ValidationError, match="occurred_at is more than 3600 s after the event was reported"):
            emitter.send_events(good[:3] + [late] + good[3:])
        emitter.flush()
        assert emitter.sent == 3
    assert sorted(r.record["event_id"] for r in landed()) == sorted(e.event_id for e in good[:3])


@pytest.mark.broker
def test_send_events_and_send_event_mixed_keep_each_partitions_order(usage_settings, landed):
    events = [e for e in synthetic(400) if e.kind == "inference"]
    with emitter_for(usage_settings, max_pending=64) as emitter:
        for n in range(0, len(events), 50):
            emitter.send_events(events[n:n + 25])
            for event in events[n + 25:n + 50]:
                emitter.send_event(event)
            assert emitter._in_flight <= 64 + 25
    order = [e.event_id for e in events]
    by_partition: dict = {}
    for r in landed():
        by_partition.setdefault(r.partition, []).append(r.record["event_id"])
    assert sorted(i for ids in by_partition.values() for i in ids) == sorted(order)
    for ids in by_partition.values():
        assert ids == sorted(ids, key=order.index)


@pytest.mark.broker
def test_a_batch_too_large_for_the_topic_is_split_and_every_event_lands_once(make_settings):
    """The training topic takes at most 3,000 bytes a batch: kafka-python splits the native batches."""
    from kafka.admin import KafkaAdminClient, NewTopic

    settings = make_settings()
    topics = settings.kafka.topics
    small = topics.for_event("TrainingUsage")
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "3000"} if topic == small else {})
                         for topic in topics.usage])
    admin.close()
    training = [e for e in synthetic(600) if e.kind == "training"]
    with emitter_for(settings, compression_type=None) as emitter:
        emitter.send_events(training)
        emitter.flush()
        assert emitter.acknowledged == len(training)
    records = read_topics(settings.kafka.bootstrap_servers, (small,))
    assert Counter(r.record["event_id"] for r in records) == Counter(e.event_id for e in training)
    assert [r.record["event_id"] for r in records] == [e.event_id for e in training]  # one partition: in order


@pytest.mark.broker
def test_a_failed_bulk_delivery_names_every_event_it_held(tmp_path, make_settings):
    from consumers.kafka_admin import ensure_topics
    from ground.settings import Settings
    from learnright import broker

    config = Settings()
    state = broker.up(tmp_path / "private-kafka", version=config.broker.kafka_version,
                      cache_dir=config.broker.cache_dir, heap="256m", timeout_s=120)
    try:
        topics = make_settings().kafka.topics
        ensure_topics(state.bootstrap_servers, topics.usage, 1)
        emitter = UsageEmitter(state.bootstrap_servers, topics=topics, request_timeout_ms=1000,
                               delivery_timeout_ms=3000, max_block_ms=3000, reconnect_backoff_max_ms=200)
        emitter.send_events(synthetic(2))
        emitter.flush()
    finally:
        broker.down(tmp_path / "private-kafka")
    during = [e for e in synthetic(40, seed=9) if e.kind == "inference"][:3]
    emitter.send_events(during)
    with pytest.raises(DeliveryError, match=rf"InferenceUsage {during[0].event_id} was not delivered: .*"
                                            r"\(and 2 more deliveries failed\)") as raised:
        emitter.flush(timeout_s=30)
    assert isinstance(raised.value, TransientError)
    assert emitter.acknowledged == 2
    emitter.close(timeout_s=1, raise_errors=False)


@pytest.mark.broker
def test_the_ledger_books_what_send_events_sent(make_settings):
    from consumers.kafka_admin import ensure_topics
    from ledger.storage.store import Ledger
    from tests.consumers.helpers import consume_all

    settings = make_settings()
    ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.topics.usage, 2)
    book = """
format = 1

[[holders]]
id = "h"
name = "H"
""" + "".join(f"""
[[sources]]
id = "{source}"
holder = "h"

[[licenses]]
id = "lic-{source}"
source = "{source}"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = {{ rate = 1, per = 1000000, unit = "{unit}" }}
inference = {{ rate = 0.002 }}
""" for source, unit in (("src-novels", "tokens"), ("src-photos", "items"), ("src-poems", "tokens")))
    events = synthetic(1500)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(book, "book.toml")
        with emitter_for(settings) as emitter:
            emitter.send_events(events)
        stats = consume_all(settings, ledger)
        assert (stats.records, stats.accepted, stats.quarantined) == (1500, 1500, 0)
        booked = {row[0] for row in ledger.query("SELECT event_id FROM usage_events")}
    assert booked == {e.event_id for e in events}


def test_a_generator_is_read_a_chunk_at_a_time_and_a_slow_one_is_not_held_past_the_linger():
    import time

    from producers.bulk import chunks

    assert [len(c) for c in chunks(iter(range(10)), 4, 60.0)] == [4, 4, 2]
    assert [len(c) for c in chunks(list(range(10)), 4, 0.0)] == [4, 4, 2]

    def slow():
        for n in range(5):
            time.sleep(0.05)
            yield n

    assert all(len(c) < 4 for c in chunks(slow(), 4, 0.02))
