"""Confluent framing (00 + 4-byte schema id) through a schema registry, on a local stub."""

import pytest

from ground.errors import TerminalError, TransientError
from schemas import DecodeError, UnknownSchemaError, decode, default_catalog
from schemas.catalog import Catalog
from schemas.registry import RegistryUnavailableError, SchemaRegistry, SchemaRejectedError
from schemas.wire import encode_confluent
from tests.schemas.examples import EXAMPLES
from tests.schemas.registry_stub import RegistryStub

TRAINING_V1, TRAINING_V2 = default_catalog().versions("TrainingUsage")
SUBJECT = "learnright.usage.training-value"


@pytest.fixture
def stub():
    with RegistryStub() as running:
        yield running


@pytest.fixture
def registry(stub):
    with SchemaRegistry(stub.url) as client:
        yield client


def test_header_is_magic_zero_and_the_big_endian_schema_id(registry):
    schema_id = registry.register(SUBJECT, TRAINING_V2)
    data = encode_confluent(EXAMPLES["TrainingUsage"], TRAINING_V2, schema_id)
    assert data[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    name, record = decode(data, registry=registry)
    assert name == "TrainingUsage" and record["source_revision"] == "2026-09-snapshot"


def test_a_reader_knows_nothing_but_the_id(stub):
    """A consumer with a fresh client fetches the writer schema by id, once."""
    with SchemaRegistry(stub.url) as producer_side:
        data = encode_confluent(EXAMPLES["TrainingUsage"], TRAINING_V2, producer_side.register(SUBJECT, TRAINING_V2))
    with SchemaRegistry(stub.url) as consumer_side:
        for _ in range(3):
            assert decode(data, registry=consumer_side)[1]["units"] == 2_100_000
    assert [r for r in stub.requests if r[0] == "GET"] == [("GET", "/schemas/ids/1")]


def test_registration_is_asked_once_per_schema_and_subject(stub, registry):
    ids = {registry.register(SUBJECT, TRAINING_V2) for _ in range(5)}
    assert len(ids) == 1 and len([r for r in stub.requests if r[0] == "POST"]) == 1
    assert registry.register(SUBJECT, TRAINING_V1) != ids.pop()


def test_evolution_both_ways_through_the_registry(registry):
    """Old producer -> new reader, and new producer -> old reader whose catalog lacks v2."""
    old_data = encode_confluent(EXAMPLES["TrainingUsage"], TRAINING_V1, registry.register(SUBJECT, TRAINING_V1))
    assert decode(old_data, registry=registry)[1]["source_revision"] is None

    new_data = encode_confluent(EXAMPLES["TrainingUsage"], TRAINING_V2, registry.register(SUBJECT, TRAINING_V2))
    v1_only = Catalog(reader_version=1)
    name, record = decode(new_data, v1_only, registry=registry)
    assert name == "TrainingUsage" and "source_revision" not in record and record["run_id"] == "run-42"


def test_all_event_types_round_trip(registry):
    for name in default_catalog().names():
        schema = default_catalog().latest(name)
        data = encode_confluent(EXAMPLES[name], schema, registry.register(f"t.{name}-value", schema))
        assert decode(data, registry=registry)[0] == name


def test_without_a_registry_a_confluent_record_says_what_is_missing(registry):
    data = encode_confluent(EXAMPLES["TrainingUsage"], TRAINING_V2, registry.register(SUBJECT, TRAINING_V2))
    with pytest.raises(DecodeError, match=r"Confluent framed \(schema id 1\) but no schema registry is configured"):
        decode(data)


def test_an_unknown_schema_id_is_terminal(registry):
    with pytest.raises(UnknownSchemaError, match="schema id 77.*HTTP 404: Schema not found"):
        decode(b"\x00\x00\x00\x00\x4d" + b"\x02", registry=registry)


def test_a_refused_schema_is_terminal_and_names_the_subject(stub, registry):
    stub.incompatible.add(SUBJECT)
    with pytest.raises(SchemaRejectedError, match=f"TrainingUsage v2 under subject {SUBJECT}: HTTP 409") as raised:
        registry.register(SUBJECT, TRAINING_V2)
    assert isinstance(raised.value, TerminalError)


def test_a_failing_or_absent_registry_is_transient(stub, registry):
    stub.fail_next = True
    with pytest.raises(RegistryUnavailableError, match="HTTP 500") as raised:
        registry.register(SUBJECT, TRAINING_V2)
    assert isinstance(raised.value, TransientError)
    assert registry.register(SUBJECT, TRAINING_V2) == 1, "the next try succeeds"

    with SchemaRegistry("http://127.0.0.1:9", timeout_s=2) as nowhere:
        with pytest.raises(RegistryUnavailableError, match="unreachable"):
            nowhere.register(SUBJECT, TRAINING_V2)
