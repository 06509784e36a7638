"""The native fast path books exactly what the reference path books.

Fetches are built as Kafka writes them (kafka-python's record batch builder), priced
once through ``build_batch`` alone and once through the fast path, each appended to a
real DuckDB ledger of its own; the ledgers must hold the same rows, and the fast one's
entries must verify in Python. The entry digests computed natively from the fast path's Arrow
columns (as a close computes them from stored rows) are compared with ``chain.digest_accruals``
of the accruals Python builds from the same records.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import count
from json.encoder import encode_basestring

import pyarrow as pa
import pytest
from hypothesis import event, given, settings, strategies as st
from kafka.record.memory_records import MemoryRecordsBuilder

import learnright_native as native
from consumers.batch import RawRecord, build_batch
from consumers.fast_path import NATIVE_SCHEMAS, BatchBuilder, FetchBlock, compile_pricer
from ledger.errors import DuplicateEventError
from ledger.core import chain
from ledger.core.license_file import parse_book
from ledger.core.money import ACCRUAL_QUANTUM, WIDE
from ledger.core.pricing import Accrual
from ledger.storage.arrow_rows import events_table, native_accruals_table, native_events_table
from ledger.storage.entry_digests import entry_digests
from ledger.storage.store import Ledger
from ledger.services.verify import verify
from schemas import default_catalog, encode
from schemas.wire import HEADER_SIZE, MAGIC
from tests.conftest import BOOK as SHARED_BOOK

# The shared test book (src-novels, src-photos) and what the fast path must also get right.
BOOK = SHARED_BOOK + """
[[licenses]]
id = "lic-novels-nimbus"
source = "src-novels"
platform = "nimbus"
effective_from = 2026-02-01T00:00:00Z
currency = "EUR"
training = { rate = 2, per = 1000, unit = "tokens" }

[[sources]]
id = "src-tiny"
holder = "h-bo"

[[sources]]
id = "src-later"
holder = "h-ann"

[[licenses]]
id = "lic-tiny"
source = "src-tiny"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
inference = { rate = 0.000001 }
training = { rate = 99999999999, per = 1, unit = "items" }

[[sources]]
id = "src-any-time"
holder = "h-bo"

[[licenses]]
id = "lic-any-time"
source = "src-any-time"
effective_from = 0001-01-01T00:00:00Z
currency = "EUR"
inference = { rate = 0.5 }

[[licenses]]
id = "lic-later"
source = "src-later"
effective_from = 2027-01-01T00:00:00Z
currency = "USD"
inference = { rate = 1 }
""" + "".join(f"""
[[sources]]
id = "src-many-{n:02d}"
holder = "h-ann"

[[licenses]]
id = "lic-many-{n:02d}"
source = "src-many-{n:02d}"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
inference = {{ rate = 0.01 }}
""" for n in range(70))  # answers longer than the native path takes, all priceable

CATALOG = default_catalog()
START = datetime(2026, 1, 20, tzinfo=timezone.utc)
RECORD_TIME = 1_793_491_200_000  # 2026-11-01T00:00:00Z: the Kafka timestamp of the test records (plus their index)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TEXTS = ["m", "model \"quoted\"", "tab\there", "ünïcode", "line\nbreak", "\x01ctl", " ", "\u2003", "back\\slash"]


def encoded(name: str, record: dict, version: int | None = None) -> bytes:
    """``record`` single-object encoded as-is (no validation: odd values must reach the consumer)."""
    schema = CATALOG.latest(name) if version is None else next(v for v in CATALOG.versions(name) if v.version == version)
    return encode(record, schema)


def training(rng: random.Random, n: int, **overrides) -> dict:
    source, unit = rng.choice([("src-novels", "tokens"), ("src-photos", "items"), ("src-tiny", "items")])
    record = {
        "event_id": f"t{n}", "platform_id": rng.choice(["orbit", "nimbus"]), "model_id": rng.choice(TEXTS),
        "run_id": "r", "source_id": source, "units": rng.choice([1, 7, 999_999, 2**40, rng.randint(1, 5_000_000)]),
        "unit": unit, "occurred_at": START + timedelta(days=rng.randint(-30, 120), microseconds=rng.randint(0, 10**6)),
        "base_model_id": None, "metadata": {"k": "v"} if n % 2 else {}, "source_revision": None,
    }
    record.update(overrides)
    return record


def inference(rng: random.Random, n: int, **overrides) -> dict:
    sources = rng.sample(["src-novels", "src-photos", "src-tiny"], rng.randint(1, 3))
    weights = [Decimal(rng.choice([1, 2, 500_000, rng.randint(1, 300_000)])).scaleb(-6) for _ in sources]
    record = {
        "event_id": f"i{n}", "platform_id": rng.choice(["orbit", "nimbus"]), "model_id": rng.choice(TEXTS),
        "request_id": "q", "occurred_at": START + timedelta(days=rng.randint(-30, 120), microseconds=rng.randint(0, 10**6)),
        "attributions": [{"source_id": s, "weight": w} for s, w in zip(sources, weights)],
        "output_units": rng.choice([None, 5]),
    }
    record.update(overrides)
    return record


BOOKABLE = {"model_id": "m", "platform_id": "orbit", "source_id": "src-photos", "unit": "items", "occurred_at": START}


def odd_record(rng: random.Random, n: int, kind: int) -> bytes:
    """A record the fast path must leave to the reference path (to book or to quarantine)."""
    kind %= 19
    if kind == 0:
        return encoded("TrainingUsage", {k: v for k, v in training(rng, n, **BOOKABLE).items() if k != "source_revision"}, 1)
    if kind == 1:
        return encoded("TrainingUsage", training(rng, n, base_model_id="base-model", **BOOKABLE))
    if kind == 2:
        return encoded("RevenueReport", {"event_id": f"v{n}", "platform_id": "orbit", "model_id": "m", "period": "2026-02",
                                         "revenue": Decimal("10.00"), "currency": "USD", "occurred_at": START})
    if kind == 3:
        return b"\x00not avro at all"
    if kind == 4:
        return encoded("TrainingUsage", training(rng, n, units=0))
    if kind == 5:
        return encoded("TrainingUsage", training(rng, n, source_id="src-unknown"))
    if kind == 6:
        return encoded("InferenceUsage", inference(rng, n, attributions=[{"source_id": "src-later", "weight": Decimal("0.5")}]))
    if kind == 7:
        return encoded("TrainingUsage", training(rng, n, source_id="src-novels", unit="items"))
    if kind == 8:
        return encoded("InferenceUsage", inference(rng, n, attributions=[
            {"source_id": "src-novels", "weight": Decimal("0.6")}, {"source_id": "src-photos", "weight": Decimal("0.6")}]))
    if kind == 9:
        return encoded("InferenceUsage", inference(rng, n, event_id="   "))
    if kind == 10:
        return encoded("TrainingUsage", training(rng, n, source_revision="crawl-2026-01", **BOOKABLE))
    if kind == 11:
        return encoded("InferenceUsage", inference(rng, n))[:-1]
    if kind == 12:
        return encoded("TrainingUsage", training(rng, n, occurred_at=datetime(2025, 6, 1, tzinfo=timezone.utc)))
    if kind == 13:  # priced into 9999-12 before the bound on occurred_at
        return encoded("InferenceUsage", inference(rng, n, occurred_at=datetime(9999, 12, 31, tzinfo=timezone.utc)))
    if kind == 14:  # two hours after its record's timestamp
        return encoded("TrainingUsage", training(rng, n, occurred_at=EPOCH + timedelta(milliseconds=RECORD_TIME, hours=2)))
    if kind == 15:
        return encoded("InferenceUsage", inference(rng, n, attributions=[
            {"source_id": s, "weight": Decimal("0.1")} for s in ("src-photos", "src-novels", "src-photos")]))
    if kind == 16:  # over the limit of 256
        return encoded("InferenceUsage", inference(rng, n, attributions=[
            {"source_id": "src-photos", "weight": Decimal("0.000001")}] * 300))
    if kind == 17:  # longer than the native path takes, within the limit: Python books it
        return encoded("InferenceUsage", inference(rng, n, attributions=[
            {"source_id": f"src-many-{m:02d}", "weight": Decimal("0.000001")} for m in range(65)]))
    return encoded("UsageCorrection", {"event_id": f"c{n}", "platform_id": "orbit", "corrects_event_id": "t0",
                                       "action": "VOID", "occurred_at": START, "replacement_units": None,
                                       "replacement_attributions": None, "reason": "test"})


def fetch(values: list[bytes], base_offset: int = 0, compression: int = 0, timestamp: int = RECORD_TIME) -> bytes:
    """One record batch as a producer writes it (CreateTime): record ``n`` stamped ``timestamp + n``."""
    builder = MemoryRecordsBuilder(magic=2, compression_type=compression, batch_size=1 << 30, offset=base_offset)
    for n, value in enumerate(values):
        builder.append(timestamp=timestamp + n, key=b"k%d" % n, value=value,
                       headers=[("trace", b"t%d" % n)] if n % 5 == 0 else [])
    builder.close()
    return bytes(builder.buffer())


def moved(data: bytes, base_offset: int) -> bytes:
    """A one-batch fetch from ``fetch`` with its records moved to ``base_offset`` on (the
    batch's base offset, which its CRC does not cover; record offsets are deltas from it)."""
    return base_offset.to_bytes(8, "big") + data[8:]


def corpus(seed: int, count: int, odd_every: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    values = []
    for n in range(seed * 10_000, seed * 10_000 + count):
        if n % odd_every == 3:
            values.append(odd_record(rng, n, n // odd_every))
        elif rng.random() < 0.3:
            values.append(encoded("TrainingUsage", training(rng, n)))
        else:
            values.append(encoded("InferenceUsage", inference(rng, n)))
    return values


def ledger_rows(ledger: Ledger) -> dict[str, list[tuple]]:
    return {
        "events": ledger.query("SELECT * EXCLUDE (batch_id) FROM usage_events ORDER BY ALL"),
        "accruals": ledger.query("SELECT * EXCLUDE (entry_id, batch_id) FROM accruals ORDER BY ALL"),
        "quarantine": ledger.query("SELECT * EXCLUDE (quarantine_id, batch_id, quarantined_at) FROM quarantine ORDER BY ALL"),
        "offsets": ledger.query("SELECT * EXCLUDE (batch_id) FROM consumer_offsets ORDER BY ALL"),
        "revenue": ledger.query("SELECT * EXCLUDE (batch_id) FROM revenue_reports ORDER BY ALL"),
        "lineage": ledger.query("SELECT * EXCLUDE (batch_id) FROM model_lineage ORDER BY ALL"),
    }


def both_paths(tmp_path, fetches: list[tuple[str, int, int, bytes]], book: str = BOOK) -> tuple[dict, dict, object]:
    """Books ``fetches`` through the reference path and the fast path; returns both ledgers' rows."""
    builder = BatchBuilder(CATALOG)
    blocks = [FetchBlock(topic, partition, start, data, 0, 0) for topic, partition, start, data in fetches]
    with Ledger.open(tmp_path / "reference.duckdb") as reference, Ledger.open(tmp_path / "fast.duckdb") as fast:
        for ledger in (reference, fast):
            ledger.apply_licenses(book, "book.toml")
        records = [record for block in blocks for record in block.records()]
        reference.append_batch(build_batch(records, reference.load_book(), reference, CATALOG))
        batch = builder.build(blocks, fast.load_book(), fast)
        fast.append_batch(batch)
        report = verify(fast)
        assert report.ok, report.problems
        return ledger_rows(reference), ledger_rows(fast), batch


@pytest.mark.parametrize("seed", range(4))
def test_the_fast_path_books_what_the_reference_path_books(tmp_path, seed):
    fetches = [("t.usage.training", 0, 0, fetch(corpus(seed, 300))),
               ("t.usage.inference", 1, 40, fetch(corpus(seed + 100, 300), base_offset=0))]
    reference, fast, batch = both_paths(tmp_path, fetches)
    assert batch.native is not None and batch.native.event_count > 250  # most went the fast way
    assert len(batch.events) > 10 and len(batch.quarantined) > 20  # and the odd ones the reference way
    for table in reference:
        assert fast[table] == reference[table], table
    assert len(fast["events"]) + len(fast["quarantine"]) == 600 - 40  # every record from min_offset, once


def test_a_native_batch_holds_each_repeated_string_once_and_its_lines_point_at_their_events():
    """Memory, not values (the tests around this one compare the values): a line's strings are keys
    into a dictionary of the batch's distinct values, and what it repeats of its event is the event's."""
    book = parse_book(BOOK)
    rows = compile_pricer(book, CATALOG).build([("t.usage.inference", 1, 0, fetch(corpus(3, 600, odd_every=10**9)))])
    events, accruals = native_events_table(rows, 1), native_accruals_table(rows, 1, 1)
    assert rows.event_count > 300 and rows.accrual_count >= rows.event_count
    for name in ("stream", "kind", "source_id", "holder_id", "license_id", "unit", "currency", "platform_id",
                 "model_id", "period"):
        column = accruals[name].combine_chunks()
        assert pa.types.is_dictionary(column.type), name
        assert len(column.dictionary) == len(set(column.dictionary.to_pylist())) == len(set(column.to_pylist())), name
    event_ids = accruals["event_id"].combine_chunks()
    assert event_ids.dictionary.to_pylist() == events["event_id"].to_pylist()  # the events' own column, not a copy
    # A third smaller even with this corpus's short strings (the event ids' dictionary counted whole).
    assert accruals.nbytes < 0.7 * accruals.cast(pa.schema(
        [pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type) for f in accruals.schema])).nbytes


def test_two_records_with_one_key_send_the_batch_to_the_reference_path(tmp_path):
    rng = random.Random(5)
    answer = {"model_id": "m", "platform_id": "orbit", "occurred_at": START,
              "attributions": [{"source_id": "src-photos", "weight": Decimal("0.5")}]}
    first = encoded("InferenceUsage", inference(rng, 1, **answer))
    values = [first, encoded("TrainingUsage", training(rng, 2, **BOOKABLE)), first,
              encoded("InferenceUsage", inference(rng, 1, request_id="other content", **answer))]
    reference, fast, batch = both_paths(tmp_path, [("t", 0, 0, fetch(values))])
    assert batch.native is None and batch.duplicates == 1  # the retry of the same content
    assert [row[6] for row in fast["quarantine"]] == ["ConflictError"]  # the same key with other content
    assert len(fast["events"]) == 2
    assert fast == reference


def test_an_event_booked_already_is_refused_whole_and_nothing_is_written(tmp_path):
    rng = random.Random(6)
    answer = {"model_id": "m", "platform_id": "orbit", "occurred_at": START,
              "attributions": [{"source_id": "src-photos", "weight": Decimal("0.25")}]}
    values = [encoded("InferenceUsage", inference(rng, n, **answer)) for n in range(20)]
    builder = BatchBuilder(CATALOG)
    with Ledger.open(tmp_path / "l.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        ledger.append_batch(builder.build([FetchBlock("t", 0, 0, fetch(values[:5]), 5, 4)], ledger.load_book(), ledger))
        state = ("SELECT (SELECT count(*) FROM usage_events),"
                 " (SELECT count(*) FROM accruals)")
        before = (ledger.last_entry_id, ledger.query(state))
        again = builder.build([FetchBlock("t", 0, 0, fetch(values), 20, 19)], ledger.load_book(), ledger)
        with pytest.raises(DuplicateEventError, match="booked already"):
            ledger.append_batch(again)
        assert (ledger.last_entry_id, ledger.query(state)) == before
        ledger.append_batch(builder.reference([FetchBlock("t", 0, 0, fetch(values), 20, 19)], ledger.load_book(), ledger))
        assert ledger.query("SELECT count(*) FROM usage_events")[0][0] == 20
        assert verify(ledger).ok


def test_times_at_the_edges_of_months_and_of_python_datetimes_match(tmp_path):
    utc = timezone.utc
    moments = [datetime(1, 1, 1, tzinfo=utc), datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=utc),
               datetime(1970, 1, 1, tzinfo=utc), datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=utc),
               datetime(2100, 3, 1, tzinfo=utc), datetime(2000, 12, 31, 23, 59, 59, tzinfo=utc),
               datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=utc)]
    rng = random.Random(8)
    values = [encoded("InferenceUsage", inference(rng, n, model_id="m", occurred_at=moment, attributions=[
        {"source_id": "src-any-time", "weight": Decimal("0.000001")}])) for n, moment in enumerate(moments)]
    end_of_9999 = 253_402_300_799_999  # a timestamp a producer chose (CreateTime): nothing is after it
    reference, fast, batch = both_paths(tmp_path, [("t", 0, 0, fetch(values, timestamp=end_of_9999))])
    assert batch.native is not None and batch.native.event_count == len(moments)
    assert fast == reference
    assert [row[6] for row in sorted(fast["events"], key=lambda r: r[5])] == [
        "0001-01", "1969-12", "1970-01", "2000-12", "2024-02", "2100-03", "9999-12"]


BIG = BOOK + """
[[sources]]
id = "src-big"
holder = "h-ann"

[[licenses]]
id = "lic-big"
source = "src-big"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = { rate = 10000000000000000.000000000001, per = 1, unit = "items" }
inference = { rate = 99999999999999999999 }
"""


@pytest.mark.parametrize("units, weight", [(1, "0.000001"), (10**10, "1")])
def test_rates_with_more_than_28_digits_price_alike_and_overflows_are_the_reference_paths(tmp_path, units, weight):
    rng = random.Random(10)
    values = [encoded("TrainingUsage", training(rng, 1, units=units, **{**BOOKABLE, "source_id": "src-big"})),
              encoded("InferenceUsage", inference(rng, 2, model_id="m", platform_id="orbit", occurred_at=START,
                                                  attributions=[{"source_id": "src-big", "weight": Decimal(weight)}]))]
    reference, fast, batch = both_paths(tmp_path, [("t", 0, 0, fetch(values))], book=BIG)
    assert fast == reference
    if units == 1:  # 10000000000000000.000000000001 x 1 and 99999999999999999999 x 0.000001 fit
        assert batch.native.event_count == 2
        assert {row[14] for row in fast["accruals"]} == {Decimal("10000000000000000.000000000001"),
                                                         Decimal("99999999999999.999999")}
    else:  # 1E10 x 1E16 is beyond 26 integer digits: Python quarantines it with the reason
        assert [row[6] for row in fast["quarantine"]] == ["PricingError"]


def test_a_record_left_to_python_is_ordered_among_the_others_as_polled(tmp_path):
    rng = random.Random(11)
    fields = {k: v for k, v in training(rng, 1, units=5, **BOOKABLE).items() if k != "source_revision"}
    older = encoded("TrainingUsage", fields, 1)  # the fast path leaves v1 to Python
    other = encoded("TrainingUsage", training(rng, 1, units=6, **BOOKABLE))  # same key, other content
    unpriceable = encoded("TrainingUsage", training(rng, 1, units=5, **{**BOOKABLE, "source_id": "src-unknown"}))
    items = [FetchBlock("t", 0, 0, fetch([older]), 1, 0),
             RawRecord(topic="t", partition=1, offset=0, timestamp=RECORD_TIME, key=None, value=other),
             FetchBlock("t", 2, 0, fetch([unpriceable]), 1, 0)]
    builder = BatchBuilder(CATALOG)
    with Ledger.open(tmp_path / "l.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        book = ledger.load_book()
        reference, fast = builder.reference(items, book, ledger), builder.build(items, book, ledger)
    assert [(e.partition, e.offset) for e in fast.events] == [(e.partition, e.offset) for e in reference.events] == [(0, 0)]
    assert [(q.partition, q.error_class) for q in fast.quarantined] == [(1, "ConflictError"), (2, "ConflictError")]
    assert fast.quarantined == reference.quarantined


def test_a_record_sharing_a_key_with_a_fast_path_event_is_a_conflict_as_on_the_reference_path(tmp_path):
    rng = random.Random(12)
    booked = encoded("TrainingUsage", training(rng, 1, units=5, **BOOKABLE))
    clash = encoded("TrainingUsage", training(rng, 1, units=5, **{**BOOKABLE, "source_id": "src-unknown"}))
    reference, fast, batch = both_paths(tmp_path, [("t", 0, 0, fetch([booked, clash]))])
    assert fast == reference
    assert [row[6] for row in fast["quarantine"]] == ["ConflictError"]


def test_fetches_the_scanner_does_not_take_are_left_to_kafka_python():
    values = corpus(9, 10)
    plain = fetch(values)
    assert native.scan_fetch(plain, 0)[:2] == (10, 10)
    assert native.scan_fetch(plain, 4)[:2] == (10, 6)  # records before the position are skipped
    assert native.scan_fetch(plain + plain[:30], 0)[:2] == (10, 10)  # a partial trailing batch is not read
    assert native.scan_fetch(fetch(values, compression=1), 0) is None  # gzip: kafka-python decompresses
    corrupt = bytearray(plain)
    corrupt[30] ^= 0xFF  # inside the batch's base timestamp, which its CRC covers
    assert native.scan_fetch(bytes(corrupt), 0) is None  # a failed CRC: kafka-python raises its own error
    assert native.scan_fetch(bytes(corrupt), 0, False) is not None
    negative = bytearray(plain)
    negative[8:12] = (-1).to_bytes(4, "big", signed=True)  # a length no batch has (outside the CRC)
    assert native.scan_fetch(bytes(negative), 0, False) is None


LZ4 = 3  # kafka-python's compression type for lz4, the SDK's codec


def test_lz4_batches_unpack_to_the_batches_a_producer_writes_uncompressed():
    """What the SDK sends (lz4) reaches the scanner as the very batches an uncompressed producer
    writes: header kept, length and CRC recomputed, plain batches of the fetch left as they are."""
    first, second = corpus(21, 40), corpus(22, 25)
    mixed = fetch(first, compression=LZ4) + fetch(second, base_offset=40)
    assert native.plain_fetch(mixed) == fetch(first) + fetch(second, base_offset=40)
    assert native.plain_fetch(fetch(first)) is None  # nothing compressed: the fetch is read as it is
    assert native.scan_fetch(native.plain_fetch(mixed), 5)[:2] == (65, 60)


def test_lz4_batches_kafka_python_must_judge_are_left_to_it():
    packed = fetch(corpus(23, 30), compression=LZ4)
    corrupt = bytearray(packed)
    corrupt[70] ^= 0xFF  # inside the compressed records, which the batch's CRC covers
    assert native.plain_fetch(bytes(corrupt)) is None  # a failed CRC: kafka-python raises its own error
    garbage = bytearray(packed)
    garbage[61:] = bytes(len(packed) - 61)  # not an lz4 frame at all
    assert native.plain_fetch(bytes(garbage), False) is None
    assert native.scan_fetch(bytes(garbage), 0, False) is None  # so kafka-python reads (and refuses) it
    assert native.plain_fetch(fetch(corpus(23, 30), compression=1)) is None  # gzip: kafka-python decompresses


@pytest.mark.parametrize("seed", range(2))
def test_the_fast_path_books_lz4_fetches_as_the_reference_path_books_them_plain(tmp_path, seed):
    values = corpus(seed + 300, 300)
    reference, _, unpacked = both_paths(tmp_path / "plain", [("t.usage.training", 0, 0, fetch(values))])
    packed = native.plain_fetch(fetch(values, compression=LZ4))
    _, fast, batch = both_paths(tmp_path / "lz4", [("t.usage.training", 0, 0, packed)])
    assert batch.native.event_count == unpacked.native.event_count > 100  # as many the fast way as unpacked
    for table in reference:
        assert fast[table] == reference[table], table


def test_the_native_reader_matches_the_latest_schemas():
    for name, fingerprint in NATIVE_SCHEMAS.items():
        assert CATALOG.latest(name).fingerprint.hex() == fingerprint, f"update native/src/avro.rs for {name}"
    assert compile_pricer(parse_book(BOOK), CATALOG) is not None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1))
def test_amount_text_is_pythons(unscaled):
    assert native.format_scale12(unscaled) == str(Decimal(unscaled).scaleb(-12, context=WIDE).quantize(ACCRUAL_QUANTUM, context=WIDE))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_string_text_is_pythons(text):
    assert native.json_string(text) == encode_basestring(text)


def test_the_native_reader_reads_the_single_object_header_python_writes():
    # native/src/ingest.rs checks these two bytes and skips exactly this much before the Avro body.
    assert (MAGIC, HEADER_SIZE) == (b"\xc3\x01", 10)


@pytest.fixture(scope="module")
def empty_ledger(tmp_path_factory):
    with Ledger.open(tmp_path_factory.mktemp("fuzz") / "empty.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        yield ledger


def _columns(table) -> list[dict]:
    return table.to_pylist()


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["TrainingUsage", "InferenceUsage"]),
       edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
       cut=st.integers(0, 3))
def test_mutated_bodies_are_booked_exactly_as_python_books_them_or_left_to_python(empty_ledger, seed, kind, edits, cut):
    """Differential fuzz: whatever the native reader books, Python books identically."""

    rng = random.Random(seed)
    make = training if kind == "TrainingUsage" else inference
    value = bytearray(encoded(kind, make(rng, seed)))
    for position, byte in edits:
        if HEADER_SIZE <= position < len(value):  # the header names the schema; mutate the body
            value[position] = byte
    value = bytes(value[:len(value) - cut])
    book = empty_ledger.load_book()
    rows = compile_pricer(book, CATALOG).build([("t", 0, 0, fetch([value]))])
    python = build_batch([RawRecord(topic="t", partition=0, offset=0, timestamp=RECORD_TIME, key=b"k0", value=value,
                                    headers=(("trace", b"t0"),))],
                         book, empty_ledger, CATALOG)
    if rows.event_count == 0:
        event("left to Python")
        assert len(rows.fallback()) == 1  # left to Python, whatever Python decides
        return
    event("booked natively")
    assert len(python.events) == 1, python.quarantined
    assert _columns(native_events_table(rows, 1)) == _columns(events_table(python.events, 1))
    accruals = placed(python)
    assert native_digests(rows) == chain.digest_accruals(accruals)
    assert _columns(native_accruals_table(rows, 1, 1)) == expected_accrual_rows(accruals, 1, 1)


def placed(batch) -> list[Accrual]:
    """The batch's accruals, checked to sit where the fast path puts them: at their event's record."""
    where = {(e.platform_id, e.event_id): (chain.stream_of(e.topic, e.partition), e.offset) for e in batch.events}
    accruals = list(batch.accruals)
    assert [(a.stream, a.position) for a in accruals] == [where[a.platform_id, a.event_id] for a in accruals]
    return accruals


def native_digests(rows) -> list[str]:
    """The digest of each accrual of a native batch, computed from its Arrow columns as a close computes
    them from the stored rows (``ledger.storage.entry_digests``)."""
    table = native_accruals_table(rows, 1, 1).select(list(chain.ENTRY_FIELDS))
    return [digest for batch in table.to_batches() for digest in entry_digests(batch)]


def expected_accrual_rows(accruals: list[Accrual], first_entry_id: int, batch_id: int) -> list[dict]:
    """The ``accruals`` rows Python's values make, numbered from ``first_entry_id`` (no digest: schema 14)."""
    return [{**{name: getattr(a, name) for name in chain.ENTRY_FIELDS}, "entry_id": entry_id, "batch_id": batch_id}
            for entry_id, a in zip(count(first_entry_id), accruals)]


def toml_text(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escapes are TOML's; TOML also escapes DEL)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


ODD = {"holder": 'h "ünï"\t\x01', "source": "src \"q\"\\ \u2003\x7f", "license": "lic\n\x1f ✓",
       "unit": "page\b\f\r"}
ODD_BOOK = BIG + f"""
[[holders]]
id = {toml_text(ODD["holder"])}

[[sources]]
id = {toml_text(ODD["source"])}
holder = {toml_text(ODD["holder"])}

[[licenses]]
id = {toml_text(ODD["license"])}
source = {toml_text(ODD["source"])}
effective_from = 0001-01-01T00:00:00Z
currency = "EUR"
training = {{ rate = 3, per = 8, unit = {toml_text(ODD["unit"])} }}
inference = {{ rate = 0.000001 }}
"""


@pytest.fixture(scope="module")
def odd_ledger(tmp_path_factory):
    with Ledger.open(tmp_path_factory.mktemp("digests") / "odd.duckdb") as ledger:
        ledger.apply_licenses(ODD_BOOK, "book.toml")
        yield ledger


def native_and_python(ledger: Ledger, fetches: list[tuple[str, int, int, bytes]]) -> tuple[object, list[Accrual]]:
    """``fetches`` built by the fast path alone, and Python's accruals of the same records (placed)."""
    book = ledger.load_book()
    rows = compile_pricer(book, CATALOG).build(fetches)
    blocks = [FetchBlock(topic, partition, start, data, 0, 0) for topic, partition, start, data in fetches]
    python = build_batch([record for block in blocks for record in block.records()], book, ledger, CATALOG)
    return rows, placed(python)


def test_native_digests_are_pythons_for_every_kind_of_value(odd_ledger):
    """Texts that need escaping, odd topics, large offsets, tiny, huge and pre-1970 values."""
    rng = random.Random(13)
    utc = timezone.utc
    texts = [text for text in TEXTS if text.strip()]  # Python refuses a blank model_id
    values = [encoded("TrainingUsage", training(rng, n, model_id=text, occurred_at=START)) for n, text in enumerate(texts)]
    sources = [("src-novels", "0.25"), ("src-photos", "0.000001"), ("src-tiny", "0.5"), ("src-big", "0.000002")]
    values += [encoded("InferenceUsage", inference(rng, n, model_id=text, occurred_at=START, attributions=[
        {"source_id": source, "weight": Decimal(weight)} for source, weight in sources[n % 4:]]))
               for n, text in enumerate(texts, start=100)]
    values += [
        encoded("TrainingUsage", training(rng, 200, units=1, **{**BOOKABLE, "source_id": "src-big"})),
        encoded("InferenceUsage", inference(rng, 201, model_id="m", platform_id="orbit", occurred_at=START, attributions=[
            {"source_id": "src-big", "weight": Decimal("0.000001")}, {"source_id": "src-tiny", "weight": Decimal("0.999999")}])),
        encoded("TrainingUsage", training(rng, 202, units=2**40, **{**BOOKABLE, "source_id": "src-tiny"})),
        encoded("TrainingUsage", training(rng, 203, units=9, platform_id="any \"platform\" ü\t", event_id="e\x00\\\"",
                                          model_id="\u2028m\x1f", source_id=ODD["source"], unit=ODD["unit"],
                                          occurred_at=datetime(1, 1, 1, tzinfo=utc))),
        encoded("InferenceUsage", inference(rng, 204, platform_id="\U0001f600p", event_id="\x7fe", model_id="\r\nm",
                                            occurred_at=datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=utc),
                                            attributions=[{"source_id": ODD["source"], "weight": Decimal("0.000003")},
                                                          {"source_id": "src-any-time", "weight": Decimal("0.999997")}])),
    ]
    fetches = [("lr.usage.training", 0, 0, fetch(values[:10])),
               ('t "ü" \\\n\x01', 2**31 - 1, 2**40, moved(fetch(values[10:]), 2**40))]
    rows, accruals = native_and_python(odd_ledger, fetches)
    assert rows.event_count == len(values) and not rows.fallback()  # every record went the fast way
    assert {a.stream for a in accruals} == {"lr.usage.training/0", 't "ü" \\\n\x01/2147483647'}
    assert native_digests(rows) == chain.digest_accruals(accruals)
    assert _columns(native_accruals_table(rows, 7, 3)) == expected_accrual_rows(accruals, 7, 3)


def test_a_digest_depends_on_its_own_entry_alone(odd_ledger):
    """A record's digests are the same whatever it is batched with; its place changes them."""
    rng = random.Random(14)
    pricer = compile_pricer(odd_ledger.load_book(), CATALOG)
    answer = {"model_id": "m", "occurred_at": START, "attributions": [
        {"source_id": "src-photos", "weight": Decimal("0.25")}, {"source_id": "src-novels", "weight": Decimal("0.5")}]}
    data = fetch([encoded("InferenceUsage", inference(rng, n, **answer)) for n in range(6)])
    whole = native_digests(pricer.build([("t", 0, 0, data)]))
    assert len(whole) == 12
    for start in range(1, 6):  # the batch begins at a later record: the rest keep their digests
        tail = native_digests(pricer.build([("t", 0, start, data)]))
        assert whole[2 * start:] == tail
    elsewhere = native_digests(pricer.build([("t", 1, 0, data)]))  # the same records in another partition
    assert len(elsewhere) == len(whole) and not set(elsewhere) & set(whole)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.builds("{}x{}".format, *[st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)] * 2),
                      min_size=4, max_size=4),
       partition=st.integers(0, 2**31 - 1), offset=st.integers(0, 2**62))
def test_native_digests_are_pythons_for_any_text_and_place(odd_ledger, texts, partition, offset):
    topic, platform_id, event_id, model_id = texts
    value = encoded("InferenceUsage", inference(random.Random(offset), 0, platform_id=platform_id, event_id=event_id,
                                                model_id=model_id, occurred_at=START, attributions=[
                                                    {"source_id": ODD["source"], "weight": Decimal("0.25")}]))
    rows, accruals = native_and_python(odd_ledger, [(topic, partition, offset, moved(fetch([value]), offset))])
    if rows.event_count == 0:
        event("left to Python")
        return
    event("booked natively")
    assert [a.position for a in accruals] == [offset]
    assert native_digests(rows) == chain.digest_accruals(accruals)


ENDING = BOOK + """
[[revocations]]
id = "rv-novels-orbit"
source = "src-novels"
platform = "orbit"
effective_at = 2026-02-15T00:00:00Z
recorded_at = 2026-02-01T00:00:00Z
reason = "withdrawn"
by = "holder:h-ann"

[[licenses]]
id = "lic-photos"
version = 9
source = "src-photos"
effective_from = 2026-03-01T00:00:00Z
effective_to = 2026-04-01T00:00:00Z
currency = "JPY"
training = { rate = 5, per = 1, unit = "items" }
inference = { rate = 1 }
"""


def test_uses_after_consent_ended_are_left_to_python_and_booked_unlicensed_alike(tmp_path):
    fetches = [("t.usage.training", 0, 0, fetch(corpus(11, 300)))]
    reference, fast, batch = both_paths(tmp_path, fetches, book=ENDING)
    for table in reference:
        assert fast[table] == reference[table], table
    assert batch.native is not None and batch.native.event_count > 0  # sources whose consent cannot end
    assert {u.reason for u in batch.unlicensed} == {"ended", "revoked"}  # booked by Python, never natively
    with Ledger.open(tmp_path / "reference.duckdb", read_only=True) as reference_ledger:
        with Ledger.open(tmp_path / "fast.duckdb", read_only=True) as fast_ledger:
            assert fast_ledger.unlicensed_uses() == reference_ledger.unlicensed_uses() != []
