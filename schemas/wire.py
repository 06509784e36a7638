"""Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + Avro body.

The fingerprint names the writer's schema, so a reader resolves old and new data to
its own (latest) version of the same record.
"""

from __future__ import annotations

import io

import fastavro

from schemas.catalog import Catalog, SchemaVersion, default_catalog
from schemas.errors import DecodeError

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10


def encode(record: dict, schema: SchemaVersion) -> bytes:
    """Encodes ``record`` with ``schema`` behind a single-object header."""
    buffer = io.BytesIO()
    buffer.write(MAGIC)
    buffer.write(schema.fingerprint)
    fastavro.schemaless_writer(buffer, schema.parsed, record)
    return buffer.getvalue()


def decode(data: bytes, catalog: Catalog | None = None) -> tuple[str, dict]:
    """Decodes one record; returns its record name and its fields in the latest version.

    Raises:
        DecodeError: not single-object encoded, unknown fingerprint, or a corrupt body.
    """
    catalog = catalog or default_catalog()
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        raise DecodeError(
            f"record is not Avro single-object encoded: starts with {data[:2].hex() or 'nothing'}"
            f" ({len(data)} bytes), expected c301"
        )
    writer = catalog.by_fingerprint(bytes(data[2:HEADER_SIZE]))
    reader = catalog.latest(writer.name)
    buffer = io.BytesIO(data)
    buffer.seek(HEADER_SIZE)
    try:
        record = fastavro.schemaless_reader(
            buffer, writer.parsed, None if reader is writer else reader.parsed
        )
    except Exception as exc:  # fastavro raises many types on corrupt bodies.
        raise DecodeError(
            f"{writer.name} v{writer.version} body does not decode: {type(exc).__name__}: {exc}"
        ) from exc
    if buffer.tell() != len(data):
        raise DecodeError(
            f"{writer.name} v{writer.version} body has {len(data) - buffer.tell()} trailing bytes"
        )
    return writer.name, record
