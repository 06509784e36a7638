from datetime import datetime, timezone
from decimal import Decimal

import pytest

from schemas import DecodeError, UnknownSchemaError, decode, default_catalog, encode

RECORD = {
    "event_id": "e1", "platform_id": "p", "model_id": "m", "request_id": "q",
    "occurred_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
    "attributions": [{"source_id": "s", "weight": Decimal("0.7")}], "output_units": None,
}


def test_single_object_round_trip_names_its_schema():
    schema = default_catalog().latest("InferenceUsage")
    data = encode(RECORD, schema)
    assert data[:2] == b"\xc3\x01" and data[2:10] == schema.fingerprint
    name, record = decode(data)
    assert name == "InferenceUsage"
    assert record["attributions"][0]["weight"] == Decimal("0.7")


def test_garbage_and_unknown_schemas_are_decode_errors():
    with pytest.raises(DecodeError, match="not Avro single-object encoded: starts with 7b22"):
        decode(b'{"json": true}')
    with pytest.raises(UnknownSchemaError, match="fingerprint 0102030405060708 is not in the catalog"):
        decode(b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08rest")
