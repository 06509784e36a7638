"""Schema evolution: old and new producers and readers understand each other, and the
schema check refuses a version that would break either direction."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.core.usage import parse_event, to_record
from schemas import decode, default_catalog, encode
from schemas.catalog import SCHEMA_DIR, Catalog
from schemas.compatibility import check_catalog
from tests.schemas.examples import EXAMPLES

TRAINING = EXAMPLES["TrainingUsage"]


def test_training_usage_has_a_v2():
    assert [s.version for s in default_catalog().versions("TrainingUsage")] == [1, 2]


def test_new_reader_reads_data_of_an_old_producer():
    old = Catalog(reader_version=1)
    data = encode(TRAINING, old.latest("TrainingUsage"))
    assert data[2:10] == old.versions("TrainingUsage")[0].fingerprint

    name, record = decode(data, default_catalog())

    assert name == "TrainingUsage"
    assert record["source_revision"] is None, "v1 data gets v2's default"
    assert record["units"] == 2_100_000 and record["base_model_id"] == "orbit-7b"


def test_old_reader_reads_data_of_a_new_producer():
    data = encode(TRAINING, default_catalog().latest("TrainingUsage"))
    assert data[2:10] == default_catalog().versions("TrainingUsage")[1].fingerprint

    name, record = decode(data, Catalog(reader_version=1))

    assert name == "TrainingUsage"
    assert "source_revision" not in record, "a v1 reader sees v1's fields only"
    assert record == {k: v for k, v in TRAINING.items() if k != "source_revision"}


def test_an_event_is_the_same_record_whichever_version_carried_it():
    """The ledger's duplicate detection hashes to_record(); a v1 replay must match a v2 copy."""
    without_revision = dict(TRAINING, source_revision=None)
    via_v1 = decode(encode(without_revision, Catalog(reader_version=1).latest("TrainingUsage")))[1]
    via_v2 = decode(encode(without_revision, default_catalog().latest("TrainingUsage")))[1]
    event_v1, problems_v1 = parse_event("TrainingUsage", via_v1)
    event_v2, problems_v2 = parse_event("TrainingUsage", via_v2)
    assert problems_v1 == problems_v2 == []
    assert to_record(event_v1) == to_record(event_v2)
    assert "source_revision" not in to_record(event_v1)


def test_source_revision_survives_the_sdk_round_trip():
    event, problems = parse_event("TrainingUsage", TRAINING)
    assert problems == []
    _, record = decode(encode(to_record(event), default_catalog().latest("TrainingUsage")))
    assert parse_event("TrainingUsage", record)[0] == event


def test_shipped_schemas_pass_the_check():
    assert check_catalog(SCHEMA_DIR) == ()


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped schemas to break."""
    root = tmp_path / "schemas"
    for directory in SCHEMA_DIR.glob("v*"):
        shutil.copytree(directory, root / directory.name)
    return root


def add_training_v3(root: Path, change) -> None:
    raw = json.loads((SCHEMA_DIR / "v2" / "TrainingUsage.avsc").read_text())
    change(raw["fields"])
    (root / "v3").mkdir()
    (root / "v3" / "TrainingUsage.avsc").write_text(json.dumps(raw, indent=2))


def run_check(root: Path) -> subprocess.CompletedProcess:
    """What `make schema-check` runs, on another directory."""
    return subprocess.run([sys.executable, "-m", "schemas.compatibility", str(root)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])


def test_a_new_required_field_fails_the_check(schema_copy: Path):
    """Without a default, v3 cannot read v1 or v2 data: not backward compatible."""
    add_training_v3(schema_copy, lambda fields: fields.append(
        {"name": "license_id", "type": "string", "doc": "The license the platform applied."}))

    problems = [str(p) for p in check_catalog(schema_copy)]
    assert any("TrainingUsage v3: not backward compatible with v1" in p and "license_id" in p for p in problems)
    assert any("TrainingUsage v3: not backward compatible with v2" in p for p in problems)

    result = run_check(schema_copy)
    assert result.returncode == 1
    assert "TrainingUsage v3: not backward compatible with v1" in result.stderr


def test_dropping_a_required_field_fails_the_check(schema_copy: Path):
    """v1 readers need `unit`, which has no default: v3 data would not be readable by them."""
    add_training_v3(schema_copy, lambda fields: fields.remove(next(f for f in fields if f["name"] == "unit")))

    problems = [str(p) for p in check_catalog(schema_copy)]
    assert any("TrainingUsage v3: not forward compatible with v1" in p and "unit" in p for p in problems)
    assert not any("backward" in p for p in problems), "v3 can still read old data"


def test_changing_a_type_fails_the_check(schema_copy: Path):
    def units_as_string(fields):
        next(f for f in fields if f["name"] == "units")["type"] = "string"

    add_training_v3(schema_copy, units_as_string)
    result = run_check(schema_copy)
    assert result.returncode == 1
    assert "not backward compatible with v1" in result.stderr and "not forward compatible with v1" in result.stderr


def test_an_undocumented_field_fails_the_check(schema_copy: Path):
    add_training_v3(schema_copy, lambda fields: fields.append(
        {"name": "epoch", "type": ["null", "int"], "default": None}))
    assert [str(p) for p in check_catalog(schema_copy)] == ["TrainingUsage v3: field epoch has no doc"]


def test_a_compatible_v3_passes(schema_copy: Path):
    add_training_v3(schema_copy, lambda fields: fields.append(
        {"name": "epoch", "type": ["null", "int"], "default": None, "doc": "Pass over the source."}))
    result = run_check(schema_copy)
    assert result.returncode == 0, result.stderr
    assert "TrainingUsage v1, v2, v3: each fully compatible" in result.stdout


def test_the_canonical_body_is_the_same_whichever_version_wrote_the_record():
    """The ledger hashes the canonical body to tell a retry from a conflicting event."""
    from datetime import datetime, timezone

    from schemas.wire import decode_canonical, encode

    v1, v2 = default_catalog().versions("TrainingUsage")
    record = {"event_id": "e1", "platform_id": "p", "model_id": "m", "run_id": "r", "source_id": "s",
              "units": 5, "unit": "tokens", "occurred_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
              "base_model_id": None, "metadata": {}}
    old = decode_canonical(encode(record, v1))
    new = decode_canonical(encode({**record, "source_revision": None}, v2))
    assert old.canonical_body == new.canonical_body
    changed = decode_canonical(encode({**record, "units": 6}, v1))
    assert changed.canonical_body != old.canonical_body
