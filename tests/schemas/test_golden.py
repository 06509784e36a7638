"""Golden bytes: the exact encoding of one record of every schema version must not drift.

A changed byte here means records already on the topics would be read differently, or
that a schema file was edited in place instead of getting a new version. Rewrite the
golden files only for a new version: ``LEARNRIGHT_UPDATE_GOLDEN=1 pytest tests/schemas``.
"""

import os
from pathlib import Path

import pytest

from schemas import decode, default_catalog, encode
from schemas.catalog import Catalog
from tests.schemas.examples import EXAMPLES, expected

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("LEARNRIGHT_UPDATE_GOLDEN") == "1"
ALL_VERSIONS = [(name, s.version) for name in default_catalog().names() for s in default_catalog().versions(name)]


def render(name: str, version: int, data: bytes) -> str:
    return (
        f"# {name} v{version}: Avro single-object encoding of tests/schemas/examples.py:EXAMPLES[{name!r}]\n"
        "# magic\n"
        f"{data[:2].hex()}\n"
        "# CRC-64-AVRO fingerprint of the writer schema's parsing canonical form (little-endian)\n"
        f"{data[2:10].hex()}\n"
        "# body\n"
        f"{data[10:].hex()}\n"
    )


def parse(text: str) -> bytes:
    return bytes.fromhex("".join(line for line in text.splitlines() if not line.startswith("#")))


@pytest.mark.parametrize(("name", "version"), ALL_VERSIONS, ids=[f"{n}.v{v}" for n, v in ALL_VERSIONS])
def test_encoding_matches_golden_bytes(name: str, version: int):
    schema = next(s for s in default_catalog().versions(name) if s.version == version)
    data = encode(EXAMPLES[name], schema)
    path = GOLDEN / f"{name}.v{version}.hex"
    if UPDATE or not path.exists():
        path.write_text(render(name, version, data))
        if not UPDATE:
            pytest.fail(f"{path} did not exist; written now, review and commit it")
    assert data.hex() == parse(path.read_text()).hex(), f"{name} v{version} no longer encodes to {path}"


@pytest.mark.parametrize(("name", "version"), ALL_VERSIONS, ids=[f"{n}.v{v}" for n, v in ALL_VERSIONS])
def test_golden_bytes_decode_to_the_example(name: str, version: int):
    """The pinned bytes of every version still decode, into the newest reader's shape."""
    decoded_name, record = decode(parse((GOLDEN / f"{name}.v{version}.hex").read_text()))
    assert decoded_name == name
    writer = next(s for s in default_catalog().versions(name) if s.version == version)
    written = {f["name"] for f in writer.parsed["fields"]}
    assert {k: v for k, v in record.items() if k in written} == expected(name, written)


def test_every_golden_file_belongs_to_a_schema_version():
    """A golden file left behind by a removed version is a version someone deleted."""
    known = {f"{name}.v{version}.hex" for name, version in ALL_VERSIONS}
    assert {p.name for p in GOLDEN.glob("*.hex")} == known


def test_catalog_holds_every_event_type():
    assert set(Catalog().names()) == set(EXAMPLES)
