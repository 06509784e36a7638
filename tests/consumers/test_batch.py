"""Batch building: pure apart from the ledger lookups it is given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from consumers.batch import RawRecord, build_batch
from ledger.core.licenses import build_book
from schemas import default_catalog

ROOT = Path(__file__).resolve().parents[2]

_WITHOUT_THE_EDGE = """
import sys

class Hidden:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("duckdb", "pyarrow", "kafka", "learnright_native"):
            raise ImportError(f"No module named {name!r} (hidden by the test)", name=name)

sys.meta_path.insert(0, Hidden())
import consumers.batch
"""


class NothingBooked:
    """The ledger lookups of an empty ledger."""

    def known_events(self, keys):
        return {}

    def booked_entries(self, keys):
        return {}

    def corrections_of(self, keys):
        return {}


def test_batch_building_imports_without_duckdb_arrow_or_kafka():
    result = subprocess.run([sys.executable, "-c", _WITHOUT_THE_EDGE], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_refused_record_is_quarantined_with_its_stable_code_and_its_class():
    record = RawRecord(topic="t", partition=0, offset=7, key=b"k", value=b"\x00not avro")
    batch = build_batch([record], build_book({}, {}, ()), NothingBooked(), default_catalog())
    (row,) = batch.quarantined
    assert (row.offset, row.error_code, row.error_class) == (7, "undecodable", "DecodeError")
    assert batch.offsets == {("t", 0): 8} and batch.events == ()
