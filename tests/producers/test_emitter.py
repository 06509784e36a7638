"""What a platform relies on when it calls UsageEmitter, checked on a real Kafka broker."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from learnright import broker
from consumers.kafka_admin import ensure_topics
from ground.errors import TransientError, ValidationError
from ground.settings import Settings
from producers import DeliveryError, UsageEmitter
from schemas.registry import SchemaRegistry
from tests.producers.conftest import read_topics
from tests.schemas.registry_stub import RegistryStub

pytestmark = pytest.mark.broker

NOW = datetime(2026, 10, 3, 12, 0, tzinfo=timezone.utc)
TRAINING = dict(model_id="orbit-7b", run_id="run-42", source_id="src-novels", units=2_100_000,
                unit="tokens", occurred_at=NOW)
INFERENCE = dict(model_id="orbit-7b", request_id="req-9", occurred_at=NOW,
                 attributions={"src-novels": "0.7", "src-photos": "0.3"})
REVENUE = dict(model_id="orbit-7b", period="2026-09", revenue="1843.20", currency="USD", occurred_at=NOW)


def emitter_for(settings: Settings, **options) -> UsageEmitter:
    return UsageEmitter(settings.kafka.bootstrap_servers, platform_id="orbit", topics=settings.kafka.topics, **options)


def without(fields: dict, name: str) -> dict:
    return {k: v for k, v in fields.items() if k != name}


# (what the platform got wrong, call, field named, value named)
BAD_INPUTS = [
    ("missing field", lambda e: e.send("training", without(TRAINING, "run_id") | {"event_id": "t1"}),
     "run_id", None),
    ("wrong type", lambda e: e.training(**TRAINING | {"units": "lots"}), "units", "lots"),
    ("negative units", lambda e: e.training(**TRAINING | {"units": -3}), "units", -3),
    ("a weight over 1", lambda e: e.inference(**INFERENCE | {"attributions": {"src-novels": "1.5"}}),
     "attributions[0].weight", Decimal("1.5")),
    ("weights summing over 1",
     lambda e: e.inference(**INFERENCE | {"attributions": {"src-novels": "0.7", "src-photos": "0.4"}}),
     "attributions", "1.1"),
    ("naive timestamp", lambda e: e.training(**TRAINING | {"occurred_at": datetime(2026, 10, 3, 12)}),
     "occurred_at", datetime(2026, 10, 3, 12)),
    ("float amount", lambda e: e.revenue(**REVENUE | {"revenue": 1843.2}), "revenue", 1843.2),
    ("float weight", lambda e: e.inference(**INFERENCE | {"attributions": {"src-novels": 0.7}}),
     "attributions[0].weight", 0.7),
    ("unknown currency", lambda e: e.revenue(**REVENUE | {"currency": "USX"}), "currency", "USX"),
]


@pytest.mark.parametrize(("case", "call", "field", "value"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_a_bad_input_names_field_and_value_and_sends_nothing(usage_settings, landed, case, call, field, value):
    with emitter_for(usage_settings) as emitter:
        with pytest.raises(ValidationError) as raised:
            call(emitter)
        emitter.flush()
    error = raised.value
    assert (error.field, error.value) == (field, value)
    assert field in str(error) and repr(value) in str(error), str(error)
    assert emitter.sent == 0
    assert landed() == []


def test_a_bad_event_between_good_ones_does_not_stop_them(usage_settings, landed):
    with emitter_for(usage_settings) as emitter:
        emitter.training(**TRAINING, event_id="good-1")
        with pytest.raises(ValidationError, match=r"units must be > 0 \(got -3\)"):
            emitter.training(**TRAINING | {"units": -3}, event_id="bad")
        emitter.training(**TRAINING, event_id="good-2")
    assert [r.record["event_id"] for r in landed()] == ["good-1", "good-2"]


def test_every_emitted_event_arrives_exactly_once(usage_settings, landed):
    """600 events of all four types: each event id on its topic once, with the fields sent."""
    sources = ["src-novels", "src-photos", "src-poems"]
    expected: dict[str, str] = {}
    with emitter_for(usage_settings) as emitter:
        for n in range(600):
            at = NOW + timedelta(seconds=n)
            kind = n % 4
            if kind in (0, 1):
                emitter.training(**TRAINING | {"source_id": sources[n % 3], "units": n + 1, "occurred_at": at},
                                 event_id=f"t-{n}", source_revision=f"rev-{n}")
                expected[f"t-{n}"] = "TrainingUsage"
            elif kind == 2:
                emitter.inference(**INFERENCE | {"occurred_at": at}, event_id=f"i-{n}", output_units=n + 1)
                expected[f"i-{n}"] = "InferenceUsage"
            else:
                emitter.revenue(**REVENUE | {"revenue": f"{n}.25"}, event_id=f"r-{n}")
                expected[f"r-{n}"] = "RevenueReport"
        emitter.correct(corrects_event_id="t-0", action="VOID", occurred_at=NOW, event_id="c-0", reason="test run")
        expected["c-0"] = "UsageCorrection"
        assert emitter.sent == 601

    records = landed()
    counts = Counter(r.record["event_id"] for r in records)
    assert len(records) == 601
    assert {i for i, c in counts.items() if c != 1} == set()
    assert {r.record["event_id"]: r.name for r in records} == expected
    by_id = {r.record["event_id"]: r for r in records}
    assert by_id["t-4"].record["units"] == 5 and by_id["t-4"].record["source_revision"] == "rev-4"
    assert by_id["r-3"].record["revenue"] == Decimal("3.25")
    assert by_id["c-0"].topic == usage_settings.kafka.topics.for_event("UsageCorrection")

    # Every record is keyed by its event (a correction by the event it corrects): one writer
    # of a ledger cluster decides every rule about one event (docs/scaling.md, "Partition keys").
    for r in records:
        subject = r.record["corrects_event_id"] if r.name == "UsageCorrection" else r.record["event_id"]
        assert r.key == f"{r.record['platform_id']}/{subject}".encode()


def test_a_delivery_failure_reaches_the_caller(tmp_path, make_settings):
    """The broker stops after the first event: the second fails and the caller is told which."""
    config = Settings()
    state = broker.up(tmp_path / "private-kafka", version=config.broker.kafka_version,
                      cache_dir=config.broker.cache_dir, heap="256m", timeout_s=120)
    try:
        topics = make_settings().kafka.topics
        ensure_topics(state.bootstrap_servers, topics.usage, 1)
        emitter = UsageEmitter(state.bootstrap_servers, platform_id="orbit", topics=topics,
                               request_timeout_ms=1000, delivery_timeout_ms=3000, max_block_ms=3000,
                               reconnect_backoff_max_ms=200)
        emitter.training(**TRAINING, event_id="before-the-outage")
        emitter.flush()
    finally:
        broker.down(tmp_path / "private-kafka")

    emitter.training(**TRAINING, event_id="during-the-outage")
    with pytest.raises(DeliveryError, match="TrainingUsage during-the-outage was not delivered") as raised:
        emitter.flush(timeout_s=30)
    assert isinstance(raised.value, TransientError), "a platform may retry it"
    emitter.close(timeout_s=1, raise_errors=False)


def test_with_a_schema_registry_records_carry_confluent_framing(usage_settings):
    """Magic 0 + the registry's schema id; a consumer with the same registry reads them."""
    topics = usage_settings.kafka.topics
    with RegistryStub() as stub:
        with emitter_for(usage_settings, schema_registry_url=stub.url) as emitter:
            emitter.training(**TRAINING, event_id="framed-t")
            emitter.inference(**INFERENCE, event_id="framed-i")
        assert set(stub.subjects) == {f"{topics.for_event('TrainingUsage')}-value",
                                      f"{topics.for_event('InferenceUsage')}-value"}
        with SchemaRegistry(stub.url) as registry:
            records = read_topics(usage_settings.kafka.bootstrap_servers, topics.usage, registry)
    training_id = stub.subjects[f"{topics.for_event('TrainingUsage')}-value"][0]
    by_id = {r.record["event_id"]: r for r in records}
    assert set(by_id) == {"framed-t", "framed-i"}
    assert by_id["framed-t"].value[:5] == b"\x00" + training_id.to_bytes(4, "big")
    assert by_id["framed-i"].record["attributions"][0]["weight"] == Decimal("0.7")


def test_an_unreachable_registry_sends_nothing(usage_settings, landed):
    with emitter_for(usage_settings, schema_registry_url="http://127.0.0.1:9") as emitter:
        with pytest.raises(TransientError, match="schema registry at http://127.0.0.1:9 unreachable"):
            emitter.training(**TRAINING, event_id="not-sent")
    assert landed() == []


# (what is implausible, call, error code, words of the error)
IMPLAUSIBLE = [
    ("the year 9999", lambda e: e.training(**TRAINING | {"occurred_at": datetime(9999, 12, 31, tzinfo=timezone.utc)}),
     "occurred_in_future", "occurred_at is more than 3600 s after the event was reported at"),
    ("a source 10,000 times", lambda e: e.inference(**INFERENCE | {"attributions": [("src-novels", "0.00001")] * 10_000}),
     "too_many_attributions", "attributions must name at most 256 sources in one answer (got '10000 sources')"),
    ("a source twice", lambda e: e.inference(**INFERENCE | {"attributions": [("src-novels", "0.1"), ("src-photos", "0.1"),
                                                                             ("src-novels", "0.1")]}),
     "invalid_value", "attributions[2].source_id repeats attributions[0].source_id; an answer names each source once"
                      " (got 'src-novels')"),
    ("257 sources", lambda e: e.inference(**INFERENCE | {"attributions": [(f"src-{n}", "0.000001") for n in range(257)]}),
     "too_many_attributions", "attributions must name at most 256 sources in one answer (got '257 sources')"),
]


@pytest.mark.parametrize(("case", "call", "code", "words"), IMPLAUSIBLE, ids=[c[0] for c in IMPLAUSIBLE])
def test_implausible_usage_is_refused_before_anything_is_sent(usage_settings, landed, case, call, code, words):
    with emitter_for(usage_settings) as emitter:
        with pytest.raises(ValidationError) as raised:
            call(emitter)
        emitter.flush()
    assert raised.value.code == code and words in str(raised.value), str(raised.value)
    assert emitter.sent == 0
    assert landed() == []


def test_an_event_built_earlier_is_bounded_by_the_clock_when_it_is_sent(usage_settings, landed):
    from ledger.core.usage import UsageLimits, validate

    soon = datetime.now(timezone.utc) + timedelta(minutes=30)
    event = validate("TrainingUsage", {**TRAINING, "event_id": "soon", "platform_id": "orbit", "occurred_at": soon})
    with emitter_for(usage_settings, limits=UsageLimits(max_future_s=60, max_attributions=1)) as strict:
        with pytest.raises(ValidationError, match="occurred_at is more than 60 s after the event was reported"):
            strict.send_event(event)
        with pytest.raises(ValidationError, match=r"attributions must name at most 1 sources in one answer"):
            strict.inference(**INFERENCE | {"event_id": "two"})  # two sources
    assert strict.sent == 0
    with emitter_for(usage_settings) as emitter:  # the default limits: within the hour
        emitter.send_event(event)
    assert [r.record["event_id"] for r in landed()] == ["soon"]


def test_a_small_send_buffer_blocks_instead_of_dropping(usage_settings, landed):
    """With room for 4 pending records, 60 sends wait for acknowledgements; every one lands once."""
    with emitter_for(usage_settings, max_pending=4) as emitter:
        for n in range(60):
            emitter.training(**TRAINING | {"units": n + 1}, event_id=f"bp-{n}")
            assert len(emitter._pending) <= 4
        emitter.flush()
        assert (emitter.sent, emitter.acknowledged) == (60, 60)
    counts = Counter(r.record["event_id"] for r in landed())
    assert counts == Counter({f"bp-{n}": 1 for n in range(60)})
