"""The native fast path applies the bounds on plausible usage exactly as the reference path does.

``occurred_at`` is bounded by the Kafka record's own timestamp (read as kafka-python reads
it, LogAppendTime batches included); an answer names each source once and at most
``max_attributions`` sources. Whatever the native path books, Python books identically;
whatever the bounds refuse, the native path leaves to Python, which quarantines it with
its reason. Fetches and ledgers as in ``test_fast_path``.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import event, given, settings, strategies as st

import learnright_native as native
from consumers.batch import RawRecord, build_batch, kafka_timestamp
from consumers.fast_path import compile_pricer
from ledger.core.usage import UsageLimits
from ledger.storage.store import Ledger
from tests.consumers.test_fast_path import (BOOK, BOOKABLE, CATALOG, EPOCH, RECORD_TIME, START, both_paths, corpus,
                                            encoded, fetch, inference, training)


@pytest.fixture(scope="module")
def empty_ledger(tmp_path_factory):
    with Ledger.open(tmp_path_factory.mktemp("limits") / "empty.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        yield ledger


def _columns(table) -> list[dict]:
    return table.to_pylist()


def test_occurred_at_after_its_records_timestamp_and_the_window_is_quarantined_on_both_paths(tmp_path):
    """The bound is the record's own timestamp: the same log books the same, whenever it is read."""
    def reported(n: int) -> datetime:  # record n is stamped RECORD_TIME + n ms
        return EPOCH + timedelta(milliseconds=RECORD_TIME + n)

    window = timedelta(seconds=3600)
    moments = [reported(0), reported(1) + window, reported(2) + window + timedelta(microseconds=1),
               datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)]
    rng = random.Random(9)
    values = [encoded("InferenceUsage", inference(rng, n, model_id="m", occurred_at=moment, attributions=[
        {"source_id": "src-any-time", "weight": Decimal("0.5")}])) for n, moment in enumerate(moments)]
    reference, fast, batch = both_paths(tmp_path, [("t", 0, 0, fetch(values))])
    assert fast == reference
    assert batch.native.event_count == 2 and [row[9] for row in fast["events"]] == [0, 1]
    # quarantine rows: topic, partition, offset, key, value, headers, class, reason, platform, event, code, timestamp
    quarantined = {row[2]: row for row in fast["quarantine"]}  # by offset
    assert sorted(quarantined) == [2, 3]
    assert {(row[10], row[6]) for row in quarantined.values()} == {("occurred_in_future", "FutureEventError")}
    assert "more than 3600 s after the event was reported at 2026-11-01T00:00:00.002Z" in quarantined[2][7]
    assert "9999-12-31T23:59:59.999999+00:00" in quarantined[3][7]
    assert [quarantined[offset][11] for offset in (2, 3)] == [RECORD_TIME + 2, RECORD_TIME + 3]  # kept for replay


def test_repeated_sources_and_answers_over_the_limit_are_quarantined_on_both_paths(tmp_path):
    rng = random.Random(10)
    one = {"source_id": "src-photos", "weight": Decimal("0.00001")}
    answers = [
        [one] * 10_000,  # one source named 10,000 times: 10,000 accruals before the limits
        [one, {"source_id": "src-novels", "weight": Decimal("0.1")}, one],
        [{"source_id": f"src-many-{m:02d}", "weight": Decimal("0.000001")} for m in range(65)],  # Python's to book
        [{"source_id": "src-photos", "weight": Decimal("0.5")}],
    ]
    values = [encoded("InferenceUsage", inference(rng, n, model_id="m", occurred_at=START, attributions=a))
              for n, a in enumerate(answers)]
    reference, fast, batch = both_paths(tmp_path, [("t", 0, 0, fetch(values))])
    assert fast == reference
    assert batch.native.event_count == 1 and sorted(row[9] for row in fast["events"]) == [2, 3]
    assert len(fast["accruals"]) == 65 + 1
    (over, repeated) = sorted(fast["quarantine"], key=lambda row: row[2])
    assert (over[10], over[6]) == ("too_many_attributions", "AttributionLimitError")
    assert "attributions must name at most 256 sources in one answer (got '10000 sources')" in over[7]
    assert (repeated[10], repeated[6]) == ("invalid_value", "ValidationError")
    assert "attributions[2].source_id repeats attributions[0].source_id" in repeated[7] and "'src-photos'" in repeated[7]


def restamped(data: bytes, *, first_ms: int | None = None, append_ms: int | None = None) -> bytes:
    """``data`` (one record batch) with another first timestamp, or as a LogAppendTime topic's
    broker rewrites it: the batch marked LogAppendTime and its max timestamp ``append_ms``."""
    from kafka.record.util import calc_crc32c

    batch = bytearray(data)
    if first_ms is not None:
        batch[27:35] = first_ms.to_bytes(8, "big", signed=True)
    if append_ms is not None:
        batch[21:23] = (int.from_bytes(batch[21:23], "big") | 0x08).to_bytes(2, "big")
        batch[35:43] = append_ms.to_bytes(8, "big", signed=True)
    batch[17:21] = calc_crc32c(bytes(batch[21:])).to_bytes(4, "big")
    return bytes(batch)


def test_record_timestamps_are_read_as_kafka_python_reads_them():
    from kafka.record.memory_records import MemoryRecords

    values = corpus(12, 5)
    for data in (fetch(values), fetch(values, timestamp=-7), restamped(fetch(values), append_ms=RECORD_TIME + 99),
                 restamped(fetch(values), first_ms=2**63 - 3)):  # the last deltas run past a 64-bit long
        records = MemoryRecords(data)
        expected = [(r.offset, r.timestamp) for batch in iter(records.next_batch, None) for r in batch]
        wrapped = [(offset, kafka_timestamp(ts)) for offset, ts in expected]  # as the consumer reads kafka-python's
        assert [(offset, ts) for offset, ts, *_ in native.fetch_records(data, 0)] == wrapped
        assert native.scan_fetch(data, 0) is not None


def test_a_log_append_time_batch_is_bounded_by_the_brokers_time(tmp_path):
    rng = random.Random(13)
    occurred = EPOCH + timedelta(milliseconds=RECORD_TIME, hours=5)  # 5 h after the producer's stamp
    value = encoded("TrainingUsage", training(rng, 1, **{**BOOKABLE, "occurred_at": occurred}))
    for append_ms, booked in ((RECORD_TIME + 4 * 3_600_000, True), (RECORD_TIME, False)):
        (tmp_path / str(append_ms)).mkdir()
        reference, fast, batch = both_paths(tmp_path / str(append_ms),
                                            [("t", 0, 0, restamped(fetch([value]), append_ms=append_ms))])
        assert fast == reference
        assert (len(fast["events"]), len(fast["quarantine"])) == ((1, 0) if booked else (0, 1))


@settings(max_examples=300, deadline=None)
@given(timestamp=st.one_of(st.sampled_from([-(2**63), -1, 0, 2**63 - 1]),
                           st.integers(RECORD_TIME - 10**10, RECORD_TIME + 10**10)),
       after_us=st.one_of(st.integers(-3, 3), st.integers(-(10**7), 10**7), st.integers(-(10**12), 10**12)),
       max_future_s=st.sampled_from([0, 1, 3600, 86_400]),
       max_attributions=st.sampled_from([1, 2, 3, 256]),
       sources=st.lists(st.sampled_from(["src-photos", "src-novels", "src-many-00", "src-many-01"]), min_size=1, max_size=5))
def test_the_usage_limits_decide_natively_as_in_python(empty_ledger, timestamp, after_us, max_future_s,
                                                       max_attributions, sources):
    """Differential fuzz of the bounds: occurred_at around its record's timestamp plus the window,
    repeated sources, answers around the limit; the native path books exactly what Python books."""
    from ledger.storage.arrow_rows import events_table, native_events_table

    limits = UsageLimits(max_future_s=max_future_s, max_attributions=max_attributions)
    bound_us = timestamp * 1000 + max_future_s * 10**6
    if abs(timestamp - RECORD_TIME) <= 10**10:  # near the bound, where licenses are in force
        occurred_at = EPOCH + timedelta(microseconds=bound_us + after_us)
    else:  # 1970 or no datetime at all: far before or after what licenses price
        occurred_at = START + timedelta(microseconds=abs(after_us))
    record = inference(random.Random(0), 0, platform_id="orbit", model_id="m", occurred_at=occurred_at,
                       attributions=[{"source_id": s, "weight": Decimal("0.1")} for s in sources])
    value = encoded("InferenceUsage", record)
    book = empty_ledger.load_book()
    rows = compile_pricer(book, CATALOG, limits).build([("t", 0, 0, fetch([value], timestamp=timestamp))])
    python = build_batch([RawRecord(topic="t", partition=0, offset=0, timestamp=timestamp, key=b"k0", value=value,
                                    headers=(("trace", b"t0"),))], book, empty_ledger, CATALOG, limits=limits)
    occurred_us = (occurred_at - EPOCH) // timedelta(microseconds=1)
    if timestamp < 0:
        expected = "invalid_value"  # a record without a timestamp cannot bound occurred_at
    elif occurred_us > bound_us:
        expected = "occurred_in_future"
    elif len(sources) > max_attributions:
        expected = "too_many_attributions"
    elif len(set(sources)) < len(sources):
        expected = "invalid_value"
    else:
        expected = None
    event(f"{expected or 'booked'}")
    assert [q.error_code for q in python.quarantined] == ([expected] if expected else [])
    assert rows.event_count == len(python.events)
    if python.events:
        assert _columns(native_events_table(rows, 1)) == _columns(events_table(python.events, 1))
    else:
        assert len(rows.fallback()) == 1
