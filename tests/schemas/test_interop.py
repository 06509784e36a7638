"""Interop: our bytes read by an independent Avro implementation (Apache ``avro``), and back.

fastavro writes and reads our records; the Apache Software Foundation's pure-Python
``avro`` package is the second implementation. Agreement on bodies of every schema
version is what lets a platform produce with any Avro library.
"""

import io
import json
from datetime import datetime, timezone
from decimal import Decimal

import avro.io
import avro.schema
import pytest

from schemas import decode, default_catalog, encode
from schemas.wire import HEADER_SIZE, MAGIC
from tests.schemas.examples import EXAMPLES, expected

ALL = [s for name in default_catalog().names() for s in default_catalog().versions(name)]
IDS = [f"{s.name}.v{s.version}" for s in ALL]


def apache_schema(version):
    return avro.schema.parse(version.path.read_text())


def fields_of(version) -> set[str]:
    return {f["name"] for f in json.loads(version.path.read_text())["fields"]}


def utc(record: dict) -> dict:
    """avro returns its own UTC tzinfo object; compare instants, not tzinfo identities."""
    return {k: v.astimezone(timezone.utc) if isinstance(v, datetime) else v for k, v in record.items()}


@pytest.mark.parametrize("version", ALL, ids=IDS)
def test_apache_avro_reads_what_we_write(version):
    data = encode(EXAMPLES[version.name], version)
    assert data[:2] == MAGIC and data[2:HEADER_SIZE] == version.fingerprint
    body = io.BytesIO(data[HEADER_SIZE:])
    record = avro.io.DatumReader(apache_schema(version)).read(avro.io.BinaryDecoder(body))
    assert body.tell() == len(data) - HEADER_SIZE, "apache avro left bytes unread"
    assert utc(record) == expected(version.name, fields_of(version))


@pytest.mark.parametrize("version", ALL, ids=IDS)
def test_we_read_what_apache_avro_writes(version):
    body = io.BytesIO()
    # avro validates strictly: it gets only the fields this version has.
    avro.io.DatumWriter(apache_schema(version)).write(expected(version.name, fields_of(version)), avro.io.BinaryEncoder(body))
    name, record = decode(MAGIC + version.fingerprint + body.getvalue())
    assert name == version.name
    written = fields_of(version)
    assert {k: v for k, v in record.items() if k in written} == expected(version.name, written)


def test_same_bytes_from_both_implementations():
    """Byte-for-byte equal bodies: neither side has a private interpretation of the schema."""
    for version in ALL:
        ours = encode(EXAMPLES[version.name], version)[HEADER_SIZE:]
        theirs = io.BytesIO()
        avro.io.DatumWriter(apache_schema(version)).write(
            expected(version.name, fields_of(version)), avro.io.BinaryEncoder(theirs))
        assert ours.hex() == theirs.getvalue().hex(), f"{version.name} v{version.version}"


def test_decimals_must_be_at_schema_scale_for_apache_avro():
    """A pitfall for platforms producing with ``avro`` (1.12): it writes a Decimal's own digits.

    ``Decimal("0.7")`` is written as unscaled 7 under a scale-6 schema, which every reader
    decodes as 0.000007. fastavro rescales. Quantize weights and amounts to the schema's
    scale (6) before writing with ``avro``; docs/events.md says so.
    """
    version = default_catalog().latest("RevenueReport")
    record = dict(EXAMPLES["RevenueReport"], revenue=Decimal("184302.45").quantize(Decimal("0.000001")))
    body = io.BytesIO()
    avro.io.DatumWriter(apache_schema(version)).write(record, avro.io.BinaryEncoder(body))
    _, decoded = decode(MAGIC + version.fingerprint + body.getvalue())
    assert decoded["revenue"] == Decimal("184302.45")
