"""Loads every schema version once and indexes it by name and by fingerprint.

Schemas are parsed once per process; encoding and decoding use the parsed form.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from ground.errors import ConfigError
from schemas.errors import UnknownSchemaError

SCHEMA_DIR = Path(__file__).resolve().parent
EVENT_TYPES = ("TrainingUsage", "InferenceUsage", "RevenueReport", "UsageCorrection")
_VERSION_DIR = re.compile(r"^v(\d+)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaVersion:
    """One version of one event schema.

    Attributes:
        name: the record name, e.g. ``TrainingUsage``.
        version: the ``vN`` directory it lives in; 0 for a writer schema known only
            from a schema registry.
        path: its ``.avsc`` file; None for a schema fetched from a registry.
        parsed: the fastavro-parsed schema, ready for reading and writing.
        fingerprint: the 8-byte CRC-64-AVRO fingerprint of its parsing canonical
            form, in the little-endian order the single-object header carries.
    """

    name: str
    version: int
    path: Path | None
    parsed: dict
    fingerprint: bytes


class Catalog:
    """Every schema version under a directory, by name and by fingerprint.

    A version directory holds only the records that changed in it; a record's newest
    version is the one producers write and readers resolve to.

    Args:
        root: the directory holding ``v1/``, ``v2/``, ...
        reader_version: pretend to be a deployment that only knows versions up to this
            one: :meth:`latest` stops there, while writer schemas of newer versions stay
            known by fingerprint (as a schema registry would provide them). This is how
            an old reader reading new data is tested, and how a consumer can be pinned
            during a staged roll-out.
    """

    def __init__(self, root: Path = SCHEMA_DIR, *, reader_version: int | None = None):
        self.root = root
        self.reader_version = reader_version
        self._by_name: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for directory in sorted(root.iterdir()):
            match = _VERSION_DIR.match(directory.name)
            if not match or not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.avsc")):
                self._add(load_schema_file(path, int(match.group(1))))
        for versions in self._by_name.values():
            versions.sort(key=lambda s: s.version)

    def _add(self, schema: SchemaVersion) -> None:
        self._by_name.setdefault(schema.name, []).append(schema)
        # Identical schemas in two versions share a fingerprint; the first one wins.
        self._by_fingerprint.setdefault(schema.fingerprint, schema)

    def latest(self, name: str) -> SchemaVersion:
        """The newest version of ``name`` (up to ``reader_version``): what is written and read."""
        candidates = [
            s for s in self._by_name.get(name, ())
            if self.reader_version is None or s.version <= self.reader_version
        ]
        if not candidates:
            limit = "" if self.reader_version is None else f" at or below v{self.reader_version}"
            raise ConfigError(f"no schema named {name!r}{limit} under {self.root}")
        return candidates[-1]

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        """Every version of ``name``, oldest first."""
        return tuple(self._by_name.get(name, ()))

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_name))

    def by_fingerprint(self, fp: bytes) -> SchemaVersion:
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownSchemaError(
                f"schema fingerprint {fp.hex()} is not in the catalog at {self.root}"
                " (written with a schema version newer than this reader knows? upgrade the reader)"
            ) from None


def load_schema_file(path: Path, version: int) -> SchemaVersion:
    """Parses one ``.avsc`` file; a malformed file names itself."""
    try:
        raw = json.loads(path.read_text())
        parsed = fastavro.parse_schema(raw)  # the hint lets fastavro skip re-parsing per record
    except (ValueError, fastavro.schema.SchemaParseException) as exc:
        raise ConfigError(f"schema file {path} is not a valid Avro schema: {exc}") from exc
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(
        name=raw["name"],
        version=version,
        path=path,
        parsed=parsed,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


@functools.cache
def default_catalog() -> Catalog:
    """The catalog shipped in this package, loaded once."""
    return Catalog()
