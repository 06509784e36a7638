"""The wire contract: Avro schemas of usage events, versioned side by side.

``v1/``, ``v2/``, ... each hold one ``.avsc`` per event type. A record on the wire names
the exact schema it was written with (Avro single-object encoding), so a reader decodes
data from older and newer producers alike.
"""

from schemas.catalog import EVENT_TYPES, Catalog, SchemaVersion, default_catalog
from schemas.errors import DecodeError, UnknownSchemaError
from schemas.wire import decode, encode

__all__ = [
    "EVENT_TYPES",
    "Catalog",
    "DecodeError",
    "SchemaVersion",
    "UnknownSchemaError",
    "decode",
    "default_catalog",
    "encode",
]
