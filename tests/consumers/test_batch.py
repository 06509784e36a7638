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
    record = RawRecord(topic="t", partition=0, offset=7, timestamp=1_767_225_600_000, key=b"k", value=b"\x00not avro")
    batch = build_batch([record], build_book({}, {}, ()), NothingBooked(), default_catalog())
    (row,) = batch.quarantined
    assert (row.offset, row.error_code, row.error_class) == (7, "undecodable", "DecodeError")
    assert row.record_timestamp == 1_767_225_600_000  # kept, so that a replay bounds occurred_at alike
    assert batch.offsets == {("t", 0): 8} and batch.events == ()


def test_the_ledgers_usage_limits_are_the_consumer_settings(monkeypatch):
    from consumers.batch import usage_limits
    from ground.settings import ConsumerSettings, Settings
    from ledger.core.usage import DEFAULT_LIMITS, UsageLimits

    assert usage_limits(ConsumerSettings()) == DEFAULT_LIMITS  # the SDK's defaults are the ledger's
    monkeypatch.setenv("LEARNRIGHT_CONSUMER__MAX_FUTURE_S", "60")
    monkeypatch.setenv("LEARNRIGHT_CONSUMER__MAX_ATTRIBUTIONS", "8")
    assert usage_limits(Settings().consumer) == UsageLimits(max_future_s=60, max_attributions=8)


def test_kafka_timestamps_are_read_as_the_log_holds_them():
    from consumers.batch import NO_TIMESTAMP, kafka_timestamp

    assert kafka_timestamp(1_793_491_200_000) == 1_793_491_200_000
    assert kafka_timestamp(None) == NO_TIMESTAMP == -1  # message format v0 has none
    assert kafka_timestamp(2**63 + 5) == -(2**63) + 5  # kafka-python's sum past a long wraps, as in Java


def test_occurred_at_is_bounded_by_each_records_own_timestamp_not_by_the_clock():
    from datetime import datetime, timezone

    from ledger.core.license_file import parse_book
    from schemas import encode
    from tests.conftest import BOOK

    catalog = default_catalog()
    value = encode({"event_id": "far", "platform_id": "orbit", "model_id": "m", "run_id": "r",
                    "source_id": "src-photos", "units": 2, "unit": "items",
                    "occurred_at": datetime(2030, 1, 1, tzinfo=timezone.utc), "base_model_id": None, "metadata": {}},
                   catalog.latest("TrainingUsage"))
    records = [RawRecord(topic="t", partition=0, offset=n, timestamp=ms, key=None, value=value)
               for n, ms in enumerate((1_893_456_000_000 - 3_600_000, 1_893_456_000_000 - 3_600_001))]
    first = build_batch(records[:1], parse_book(BOOK), NothingBooked(), catalog)
    second = build_batch(records[1:], parse_book(BOOK), NothingBooked(), catalog)
    assert [e.period for e in first.events] == ["2030-01"]  # stamped an hour before 2030: within the window
    (row,) = second.quarantined  # stamped 1 ms earlier: beyond it, as it would be in any year it is read
    assert (row.error_code, row.record_timestamp) == ("occurred_in_future", 1_893_456_000_000 - 3_600_001)
    assert row.reason.endswith("in t[0]@1")


def test_every_entry_is_keyed_by_its_record_and_a_correction_names_its_original_by_key():
    """stream = topic/partition and position = offset of the record; line = the entry's line within it."""
    from dataclasses import replace
    from datetime import datetime, timezone
    from decimal import Decimal

    from ledger.core.license_file import parse_book
    from ledger.core.pricing import price
    from ledger.core.usage import TrainingUsage
    from schemas import encode
    from tests.conftest import BOOK

    book, catalog = parse_book(BOOK), default_catalog()
    when = datetime(2026, 4, 2, tzinfo=timezone.utc)
    original = TrainingUsage(event_id="e0", platform_id="orbit", model_id="m", run_id="r", source_id="src-photos",
                             units=4, unit="items", occurred_at=when)
    booked_original = tuple((f"usage/1@7#{n}", replace(a, stream="usage/1", position=7))
                            for n, a in enumerate(price(original, book)))

    class OriginalBooked(NothingBooked):
        def booked_entries(self, keys):
            return {("orbit", "e0"): booked_original} if ("orbit", "e0") in keys else {}

    inference = encode({"event_id": "i1", "platform_id": "orbit", "model_id": "m", "request_id": "q",
                        "occurred_at": when, "output_units": None, "attributions": [
                            {"source_id": "src-novels", "weight": Decimal("0.5")},
                            {"source_id": "src-photos", "weight": Decimal("0.25")}]},
                       catalog.latest("InferenceUsage"))
    void = encode({"event_id": "c1", "platform_id": "orbit", "corrects_event_id": "e0", "action": "VOID",
                   "replacement_units": None, "replacement_attributions": None, "reason": "", "occurred_at": when},
                  catalog.latest("UsageCorrection"))
    ms = 1_775_174_400_000  # 2026-04-03
    records = [RawRecord(topic="usage", partition=3, offset=40, timestamp=ms, key=None, value=inference),
               RawRecord(topic="fixes", partition=0, offset=9, timestamp=ms, key=None, value=void)]
    batch = build_batch(records, book, OriginalBooked(), catalog)
    assert batch.quarantined == ()
    assert [(a.event_id, a.stream, a.position, a.line, a.reverses_entry_key) for a in batch.accruals] == [
        ("i1", "usage/3", 40, 0, None), ("i1", "usage/3", 40, 1, None), ("c1", "fixes/0", 9, 0, "usage/1@7#0")]


def test_an_event_booked_with_a_full_length_content_hash_is_still_recognised_when_sent_again():
    """Content hashes keep the digest's first 128 bits; rows booked before kept all 64 hex
    characters, and a retry of such an event is a duplicate, while other content under its
    key is still a conflict."""
    import hashlib
    from datetime import datetime, timezone

    from consumers.batch import CONTENT_HASH_HEX
    from ledger.core.license_file import parse_book
    from schemas import encode
    from schemas.wire import decode_canonical
    from tests.conftest import BOOK

    book, catalog = parse_book(BOOK), default_catalog()
    when = datetime(2026, 4, 2, tzinfo=timezone.utc)

    def training(units):
        return encode({"event_id": "e0", "platform_id": "orbit", "model_id": "m", "run_id": "r",
                       "source_id": "src-photos", "units": units, "unit": "items", "occurred_at": when},
                      catalog.latest("TrainingUsage"))

    value = training(4)
    decoded = decode_canonical(value, catalog)
    full = hashlib.sha256(decoded.name.encode() + b"\x00" + decoded.canonical_body).hexdigest()
    record = RawRecord(topic="usage", partition=0, offset=1, timestamp=1_775_174_400_000, key=None, value=value)

    fresh = build_batch([record], book, NothingBooked(), catalog)
    assert [e.content_hash for e in fresh.events] == [full[:CONTENT_HASH_HEX]]

    class BookedWithTheFullHash(NothingBooked):
        def known_events(self, keys):
            return {("orbit", "e0"): full}

    again = build_batch([record], book, BookedWithTheFullHash(), catalog)
    assert (again.events, again.duplicates, again.quarantined) == ((), 1, ())
    other = RawRecord(topic="usage", partition=0, offset=2, timestamp=1_775_174_400_000, key=None, value=training(5))
    conflict = build_batch([other], book, BookedWithTheFullHash(), catalog)
    assert conflict.events == () and [q.error_code for q in conflict.quarantined] == ["event_conflict"]
