"""`emit`'s native row reader builds exactly the events the Python path builds, and only those.

Differential: every generated line (valid rows in many spellings, and rows broken in many
ways) is read by the native reader and by the reference path (``files._read_line``: json
with ``parse_float=Decimal``, then ``ledger.core.usage.parse_event``). Where the native
reader builds an event, the reference path must accept the row and build an equal event,
of the same type and repr (Decimal exponents, UTC tzinfo), encoding to the same Avro bytes
and key. Where it does not, the line takes the reference path, so its outcome is the
reference path's by construction; the tests also check that the native reader is sure
of the plain rows it is meant for (or it would be a slow no-op).
"""

from __future__ import annotations

import json
import random
import re
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.usage import DEFAULT_LIMITS, UsageLimits
from producers import files
from producers.emitter import partition_key
from producers.encoding import encode_event
from schemas import default_catalog

pytestmark = pytest.mark.skipif(files.native_reader() is None, reason="the native module is not built (make setup)")

CATALOG = default_catalog()
NOW = datetime.now(timezone.utc)


def _check(lines: list[bytes], limits: UsageLimits = DEFAULT_LIMITS) -> int:
    """Compares the native reader with the reference path on each line; returns how many it was sure of."""
    reader = files.native_reader(limits)
    now_ms = time.time_ns() // 1_000_000
    built = reader.read(lines, now_ms)
    assert len(built) == len(lines)
    sure = 0
    for number, (line, event) in enumerate(zip(lines, built), start=1):
        if event is None:
            continue
        sure += 1
        row = files._read_line(line, number, "rows.jsonl", limits)
        assert row is not None and not row.problems, (line, row)
        reference = row.event
        assert type(event) is type(reference), line
        assert event == reference, line
        assert repr(event) == repr(reference), line
        assert event.occurred_at.tzinfo is timezone.utc, line
        assert encode_event(event, CATALOG) == encode_event(reference, CATALOG), line
        assert partition_key(event) == partition_key(reference), line
    return sure


def _stamp(rng: random.Random, moment: datetime) -> str:
    shapes = [
        lambda: moment.isoformat(),
        lambda: moment.isoformat().replace("+00:00", "Z"),
        lambda: moment.isoformat(timespec="milliseconds"),
        lambda: moment.isoformat(timespec="seconds"),
        lambda: moment.astimezone(timezone(timedelta(hours=rng.choice([-11, -3, 5, 13]), minutes=rng.choice([0, 30])))).isoformat(),
        lambda: moment.isoformat(timespec="seconds").replace("+00:00", f".{rng.randrange(10 ** 7):07d}+00:00"),
        lambda: moment.isoformat(timespec="seconds").replace("+00:00", f".{rng.randrange(10):d}Z"),
        lambda: moment.replace(tzinfo=None).isoformat(),  # naive: refused
        lambda: moment.isoformat().replace("T", " "),
        lambda: moment.isoformat()[:16] + "+00:00",
        lambda: moment.isoformat().replace("+00:00", "-00:00"),
        lambda: "2026-02-30T00:00:00Z",
        lambda: "2024-02-29T23:59:59.999999Z",
        lambda: "2026-10-01T24:00:00Z",
        lambda: "2026-10-01T10:00:60Z",
        lambda: "0001-01-01T00:00:00+01:00",
        lambda: "9999-12-31T23:59:59-01:00",
        lambda: "2026-10-01T10:00:00+24:00",
        lambda: "2026-10-01t10:00:00z",
        lambda: (NOW + timedelta(seconds=rng.choice([3500, 3700, 10 ** 6]))).isoformat(),  # near the future bound
        lambda: 1760000000,
    ]
    return rng.choice(shapes)()


def _text(rng: random.Random, base: str) -> object:
    return rng.choice([base, base, base, base, "", " ", "\u00a0", "\u2003x", "é", "a b", "x\\u0041", "\t", None, 7,
                       base + "\u0000", "\u3000", "\x7f", " x "])


def _weight(rng: random.Random) -> object:
    return rng.choice([
        "0.333", "0.5", "1", "1.0", "0.000001", "0.0000001", "0.1234567", "0.100000", "00.5", "0", "0.000", "-0.1",
        "1.000001", "2", "1e-1", "0.5 ", " 0.5", "0.5.", ".5", "5.", "0_5", "NaN", "Infinity", 0.25, 1, 0, None, True,
    ])


def _weight_json(value: object, rng: random.Random) -> str:
    if isinstance(value, float):  # a JSON number with a fraction: Decimal on both paths
        return rng.choice([repr(value), "0.250", "2.5e-1", "1.0", "0.0000005"])
    return json.dumps(value)


def _row(rng: random.Random, clean: bool) -> str:
    """One JSON Lines row: a plain valid row when ``clean``, else one with random oddities."""
    kind = rng.choice(["training", "inference", "inference", "TrainingUsage", "InferenceUsage", "revenue",
                       "correction", "answer", None])
    moment = NOW - timedelta(days=rng.randrange(60), microseconds=rng.randrange(86_400_000_000))
    odd = (lambda base, **_: base) if clean else (lambda base, **_: _text(rng, base))
    fields: dict[str, str] = {}

    def put(name: str, value: object, raw: str | None = None) -> None:
        fields[name] = raw if raw is not None else json.dumps(value, ensure_ascii=rng.random() < 0.5)

    if clean:
        kind = rng.choice(["training", "inference", "TrainingUsage", "InferenceUsage"])
    put("type", kind)
    put("event_id", odd(f"ev-{rng.randrange(10 ** 9)}"))
    put("platform_id", odd(rng.choice(["orbit", "nimbus", "π-labs"])))
    put("model_id", odd("model-1"))
    put("occurred_at", moment.isoformat() if clean and rng.random() < 0.5 else
        (_stamp(rng, moment) if not clean else moment.isoformat().replace("+00:00", "Z")))
    if kind in ("training", "TrainingUsage") or (not clean and rng.random() < 0.1):
        put("run_id", odd("run-7"))
        put("source_id", odd("src-novels"))
        put("units", rng.choice([1, 2_100_000, 2 ** 62]) if clean else
            rng.choice([1, 0, -3, 2 ** 63, 2 ** 70, True, 1.0, "5", None, 12]),
            None if clean or rng.random() < 0.8 else rng.choice(["1.0", "1e3", "-0", "01"]))
        put("unit", odd("tokens"))
        if rng.random() < 0.5:
            put("base_model_id", rng.choice([None, "base-7b"]) if clean else _text(rng, "base-7b"))
        if rng.random() < 0.5:
            put("source_revision", rng.choice([None, "snap-1"]) if clean else _text(rng, "snap-1"))
        if rng.random() < 0.5:
            put("metadata", rng.choice([None, {}, {"team": "λ", "": "k"}, {"a": ""}]) if clean else
                rng.choice([None, {}, "", 0, [], False, {"a": 1}, {"a": None}, {"b": "c", "a": "d"}, "x"]))
    if kind in ("inference", "InferenceUsage") or (not clean and rng.random() < 0.1):
        put("request_id", odd("req-1"))
        if rng.random() < 0.7:
            put("output_units", rng.choice([None, 1, 135]) if clean else rng.choice([None, 0, -1, 5, True, 2.0, "3"]))
        count = rng.choice([1, 2, 3, 4]) if clean else rng.choice([0, 1, 2, 3, 4, 300])
        sources = [f"src-{n}" for n in range(count)]
        if not clean and count > 1 and rng.random() < 0.2:
            sources[-1] = sources[0]
        items = []
        for source in sources:
            if clean:
                weight = json.dumps(f"{rng.randrange(1, 1000) / (1000 * count):.6f}".rstrip("0"))
            else:
                weight = _weight_json(_weight(rng), rng)
            item = {"source_id": json.dumps(source if clean else _text(rng, source)), "weight": weight}
            if not clean and rng.random() < 0.05:
                item["extra"] = "1"
            items.append("{" + ", ".join(f'"{k}": {v}' for k, v in item.items()) + "}")
        put("attributions", None, "[" + ", ".join(items) + "]" if clean or rng.random() < 0.9
            else rng.choice(["[]", "null", "{}", '"x"', "[1]"]))
    if kind in ("revenue", "correction"):
        put("period", "2026-10")
        put("revenue", "12.50")
        put("currency", "USD")
        put("corrects_event_id", "ev-1")
        put("action", "VOID")
    if not clean and rng.random() < 0.1:
        put("note", rng.choice([{"nested": [1, 2.5, None, True]}, "x", 1e400 if False else 3]))
    members = [f'"{name}": {value}' for name, value in fields.items()]
    if not clean and rng.random() < 0.1:
        rng.shuffle(members)
    if not clean and rng.random() < 0.05:
        members.append(rng.choice(members))  # a key twice: Python keeps the last
    separator = ", " if clean or rng.random() < 0.7 else rng.choice([",", " ,\t", ",\n"])
    line = "{" + separator.join(members) + "}"
    if not clean and rng.random() < 0.1:
        line = rng.choice([" " + line, line + "  ", "\ufeff" + line, line + ",", "[" + line + "]", line[:-1],
                           line + "\r", "\x0b" + line, line.replace('"', "'", 2)])
    return line


def test_plain_rows_are_all_read_natively_and_equal_the_reference_path():
    rng = random.Random(18)
    lines = [(_row(rng, clean=True) + "\n").encode() for _ in range(3000)]
    assert _check(lines) == len(lines)


def test_odd_and_bad_rows_are_read_natively_only_when_the_reference_path_accepts_them_alike():
    rng = random.Random(1018)
    lines = [(_row(rng, clean=False) + rng.choice(["\n", "\r\n", ""])).encode() for _ in range(20000)]
    lines += [b"\n", b"   \n", b"\xff\xfe{}\n", '{"type": "training", "event_id": "é\udcff"}\n'.encode("utf-8", "surrogatepass")]
    sure = _check(lines)
    assert 0 < sure < len(lines)  # both ways were taken


def test_limits_are_those_the_reader_was_made_with():
    rng = random.Random(7)
    lines = [(_row(rng, clean=True) + "\n").encode() for _ in range(2000)]
    tight = UsageLimits(max_attributions=2, max_future_s=0)
    _check(lines, tight)
    reader = files.native_reader(tight)
    built = reader.read(lines, time.time_ns() // 1_000_000)
    assert all(len(e.attributions) <= 2 for e in built if e is not None and e.kind == "inference")
    assert any(e is None for e in built)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2 ** 32), edits=st.lists(st.tuples(st.integers(0, 10 ** 6), st.sampled_from(
    ['"', "\\", ",", ":", "{", "}", "[", "]", " ", "0", "1", "-", ".", "e", "Z", "T", "+", "\u00e9", "", "n"])),
    min_size=1, max_size=4))
def test_a_valid_row_edited_anywhere_is_read_alike(seed, edits):
    line = _row(random.Random(seed), clean=True)
    for at, text in edits:  # replace one character (or delete it) at a random place
        at %= len(line)
        line = line[:at] + text + line[at + 1:]
    _check([(line + "\n").encode()])


def test_a_file_reads_to_the_same_rows_with_and_without_the_native_reader(tmp_path: Path, monkeypatch):
    rng = random.Random(99)
    path = tmp_path / "rows.jsonl"
    text = "".join(_row(rng, clean=rng.random() < 0.7) + "\n" + ("\n" if rng.random() < 0.05 else "")
                   for _ in range(3000))
    path.write_bytes(text.encode() + b"\xc3\x28 not utf-8\n" + b'{"type": "training"}')  # last line without newline
    monkeypatch.setattr(files, "BLOCK_BYTES", 4096)  # many blocks

    def rows() -> list:  # the clock in a future-bound message is not the row's
        return [(row.line, repr(row.event), [re.sub(r"reported at \S+;", "reported at T;", str(p)) for p in row.problems],
                 row.size) for row in files.read_jsonl(path)]

    native = rows()
    monkeypatch.setattr(files, "_native", None)
    assert files.native_reader() is None
    assert native == rows()
    assert len(native) > 2900


def test_a_timestamp_out_of_range_in_utc_is_a_bad_row_not_a_crash():
    line = (b'{"type": "training", "event_id": "e", "platform_id": "p", "model_id": "m", "run_id": "r",'
            b' "source_id": "s", "units": 1, "unit": "tokens", "occurred_at": "0001-01-01T00:00:00+01:00"}\n')
    assert files.native_reader().read([line], time.time_ns() // 1_000_000) == [None]
    row = files._read_line(line, 4, "rows.jsonl", DEFAULT_LIMITS)
    assert [str(p) for p in row.problems] == [
        "occurred_at is out of range once converted to UTC (got '0001-01-01T00:00:00+01:00') in line 4 of rows.jsonl"]
