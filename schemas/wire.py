"""The two framings a record carries on a topic; both name the writer's schema.

* Avro single-object encoding (the default): ``C3 01`` + 8-byte CRC-64-AVRO
  fingerprint + Avro body. Needs nothing but the schemas shipped in this package.
* Confluent framing, when a schema registry is configured: ``00`` + 4-byte big-endian
  schema id + Avro body, for tools of the Confluent ecosystem (Connect, ksqlDB).

Either way a reader resolves old and new data to its own (latest) version of the
same record.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import fastavro

from ground.errors import TerminalError
from schemas.catalog import Catalog, SchemaVersion, default_catalog
from schemas.errors import DecodeError, UnknownSchemaError

if TYPE_CHECKING:
    from schemas.registry import SchemaRegistry

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_SIZE = 5


def encode(record: dict, schema: SchemaVersion) -> bytes:
    """Encodes ``record`` with ``schema`` behind a single-object header."""
    buffer = io.BytesIO()
    buffer.write(MAGIC)
    buffer.write(schema.fingerprint)
    fastavro.schemaless_writer(buffer, schema.parsed, record)
    return buffer.getvalue()


def encode_confluent(record: dict, schema: SchemaVersion, schema_id: int) -> bytes:
    """Encodes ``record`` with ``schema`` behind a Confluent header naming ``schema_id``.

    ``schema_id`` must be the id the registry gave ``schema`` (see
    :meth:`schemas.registry.SchemaRegistry.register`).
    """
    if not 0 <= schema_id < 2**31:
        raise DecodeError(f"schema id {schema_id} does not fit a Confluent header (4 bytes, signed)")
    buffer = io.BytesIO()
    buffer.write(CONFLUENT_MAGIC)
    buffer.write(schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buffer, schema.parsed, record)
    return buffer.getvalue()


def decode(data: bytes, catalog: Catalog | None = None, registry: "SchemaRegistry | None" = None) -> tuple[str, dict]:
    """Decodes one record of either framing; returns its record name and its fields in the latest version.

    See :func:`decode_canonical` for the errors raised.
    """
    decoded = decode_canonical(data, catalog, registry)
    return decoded.name, decoded.record


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """A decoded record and its canonical body: its Avro encoding in the latest schema version.

    The canonical body is the same bytes whichever framing or schema version carried the
    record, so hashing it identifies the content (a retry) independently of the writer.
    """

    name: str
    record: dict
    canonical_body: bytes


def decode_canonical(data: bytes, catalog: Catalog | None = None, registry: "SchemaRegistry | None" = None) -> Decoded:
    """Decodes one record of either framing, keeping its canonical body.

    Args:
        registry: resolves the schema ids of Confluent-framed records; without it
            such a record is a :class:`DecodeError` that says so.

    Raises:
        DecodeError: neither framing, unknown fingerprint or schema id, or a corrupt body.
    """
    catalog = catalog or default_catalog()
    if data[:1] == CONFLUENT_MAGIC and len(data) >= CONFLUENT_HEADER_SIZE:
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_SIZE], "big")
        if registry is None:
            raise DecodeError(
                f"record is Confluent framed (schema id {schema_id}) but no schema registry is configured")
        try:
            fetched = registry.schema(schema_id)
        except TerminalError as exc:
            raise UnknownSchemaError(f"schema id {schema_id}: {exc}") from exc
        try:
            writer = catalog.by_fingerprint(fetched.fingerprint)
        except UnknownSchemaError:
            writer = fetched  # newer than this catalog: the registry's copy still resolves to our reader
        return _read(data, CONFLUENT_HEADER_SIZE, writer, catalog, f"schema id {schema_id}")
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        raise DecodeError(
            f"record is not Avro single-object encoded: starts with {data[:2].hex() or 'nothing'}"
            f" ({len(data)} bytes), expected c301 (or 00 for Confluent framing)"
        )
    writer = catalog.by_fingerprint(bytes(data[2:HEADER_SIZE]))
    return _read(data, HEADER_SIZE, writer, catalog, f"v{writer.version}")


def _read(data: bytes, start: int, writer: SchemaVersion, catalog: Catalog, label: str) -> Decoded:
    """Reads the body after the header with ``writer``, resolved to the catalog's reader."""
    reader = catalog.latest(writer.name)
    buffer = io.BytesIO(data)
    buffer.seek(start)
    try:
        record = fastavro.schemaless_reader(
            buffer, writer.parsed, None if reader is writer else reader.parsed
        )
    except Exception as exc:  # fastavro raises many types on corrupt bodies.
        raise DecodeError(
            f"{writer.name} {label} body does not decode: {type(exc).__name__}: {exc}"
        ) from exc
    if buffer.tell() != len(data):
        raise DecodeError(
            f"{writer.name} {label} body has {len(data) - buffer.tell()} trailing bytes"
        )
    if reader is writer:
        body = bytes(data[start:])
    else:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, reader.parsed, record)
        body = out.getvalue()
    return Decoded(name=writer.name, record=record, canonical_body=body)
