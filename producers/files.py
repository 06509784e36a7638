"""Usage rows from files for `learnright emit`: JSON Lines and CSV, read and sent.

Every row is validated; problems come back as values with their line number, so a
user sees every bad row at once. Numbers are read as exact decimals, never floats.
Files are streamed: memory does not grow with the file.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from itertools import count, repeat
from operator import is_not
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ground.errors import ConfigError, LearnrightError, Transient, ValidationError
from ledger.core.usage import (
    DEFAULT_LIMITS, Attribution, InferenceUsage, TrainingUsage, UsageEvent, UsageLimits, parse_event,
)
from producers.encoding import MAX_EVENT_BYTES, encode_event, oversize_problem
from schemas import Catalog, default_catalog

if TYPE_CHECKING:
    from producers.emitter import UsageEmitter

try:
    import learnright_native as _native
except ImportError:  # pragma: no cover - `make setup` builds it
    _native = None

TYPE_ALIASES = {
    "training": "TrainingUsage", "TrainingUsage": "TrainingUsage",
    "inference": "InferenceUsage", "InferenceUsage": "InferenceUsage",
    "revenue": "RevenueReport", "RevenueReport": "RevenueReport",
    "correction": "UsageCorrection", "UsageCorrection": "UsageCorrection",
}
_TIMESTAMPS = ("occurred_at",)
_INTEGERS = ("units", "output_units", "replacement_units")


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    line: int
    event: UsageEvent | None
    problems: tuple[ValidationError, ...]
    size: int = 0
    """Bytes of the row's text in the file."""


def _timestamp(value: Any, field: str) -> Any:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(field, value, "is not an ISO 8601 timestamp") from None
        if moment.utcoffset():
            try:  # as the ledger will convert it; year 1 or 9999 with an offset cannot be
                moment.astimezone(timezone.utc)
            except OverflowError:
                raise ValidationError(field, value, "is out of range once converted to UTC") from None
        return moment
    return value


def row_to_event(fields: dict[str, Any], limits: UsageLimits = DEFAULT_LIMITS) -> tuple[UsageEvent | None, list[ValidationError]]:
    """The event of one row, or its problems; ``occurred_at`` is bounded by now (``limits``)."""
    given = fields.pop("type", None)
    kind = TYPE_ALIASES.get(given) if isinstance(given, str) else None
    if kind is None:
        return None, [ValidationError("type", given, f"must be one of {', '.join(sorted(set(TYPE_ALIASES)))}")]
    problems = []
    for name in _TIMESTAMPS:
        if name in fields:
            try:
                fields[name] = _timestamp(fields[name], name)
            except ValidationError as exc:
                problems.append(exc)
    if problems:
        return None, problems
    return parse_event(kind, fields, limits=limits, reported_ms=time.time_ns() // 1_000_000)


def _not_utf8(data: bytes, exc: UnicodeDecodeError, where: str) -> ValidationError:
    return ValidationError("row", f"byte 0x{data[exc.start]:02x} at column {exc.start + 1}",
                           "is not UTF-8 text (save the file as UTF-8)", where)


_DECODE_JSON = json.JSONDecoder(parse_float=Decimal).decode
"""``json.loads(text, parse_float=Decimal)`` without building a decoder per line."""


def read_jsonl(path: Path, limits: UsageLimits = DEFAULT_LIMITS) -> Iterator[Row]:
    """JSON Lines, one event per line; a line that is not UTF-8 is a bad row, like one that is not JSON.

    Lines are read :data:`BLOCK_BYTES` at a time. With the native module, each block's
    rows go through its reader first (:func:`native_reader`): it builds the event of every
    training or inference row it is sure the Python path accepts, and leaves every other
    line (a bad row, another kind, any doubt) to :func:`_read_line`, the reference path,
    so what is accepted and how a problem reads are the same either way.
    """
    name = path.name
    for first, lines, events in _jsonl_blocks(path, limits):
        for number, data, event in zip(count(first), lines, events):
            if event is not None:
                yield Row(line=number, event=event, problems=(), size=len(data))
            elif (row := _read_line(data, number, name, limits)) is not None:
                yield row


def _jsonl_blocks(path: Path, limits: UsageLimits) -> Iterator[tuple[int, list[bytes], list]]:
    """(number of its first line, its lines, the native reader's event or None for each line) per block."""
    reader = native_reader(limits)
    number = 1
    with path.open("rb") as handle:
        while lines := handle.readlines(BLOCK_BYTES):
            events = reader.read(lines, time.time_ns() // 1_000_000) if reader is not None else [None] * len(lines)
            yield number, lines, events
            number += len(lines)


BLOCK_BYTES = 1 << 20
"""Bytes of lines :func:`read_jsonl` reads at a time (a hint: whole lines, at least one)."""


def _read_line(data: bytes, number: int, name: str, limits: UsageLimits) -> Row | None:
    """The row of line ``number`` (``data``, as the file holds it), or None for a blank line."""
    if not data or data.isspace():
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Row(line=number, event=None, problems=(_not_utf8(data, exc, f"line {number} of {name}"),))
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        fields = _DECODE_JSON(text)
    except json.JSONDecodeError as exc:
        return Row(line=number, event=None, problems=(ValidationError(
            "row", text.strip()[:60], f"is not JSON: {exc.msg}", f"line {number} of {name}"),))
    if not isinstance(fields, dict):
        return Row(line=number, event=None, problems=(ValidationError(
            "row", fields, "must be a JSON object", f"line {number} of {name}"),))
    event, problems = row_to_event(fields, limits)
    if problems:
        where = f"line {number} of {name}"
        return Row(line=number, event=None, problems=tuple(p.at(where) for p in problems), size=len(data))
    return Row(line=number, event=event, problems=(), size=len(data))


def native_reader(limits: UsageLimits = DEFAULT_LIMITS) -> Any:
    """The native JSON Lines reader (``native/src/usage_rows.rs``) for ``limits``, or None without it.

    None too when the event classes' fields are not the ones the reader was written for:
    then every line takes the reference path.
    """
    if _native is None or not hasattr(_native, "UsageRowReader"):
        return None
    for cls in (TrainingUsage, InferenceUsage, Attribution):
        if tuple(f.name for f in dataclasses.fields(cls)) != tuple(_native.ROW_FIELDS.get(cls.__name__, ())):
            return None
    return _native.UsageRowReader(
        training=TrainingUsage, inference=InferenceUsage, attribution=Attribution, new=object.__new__,
        datetime=datetime, utc=timezone.utc, decimal=Decimal, max_future_s=limits.max_future_s,
        max_attributions=limits.max_attributions, max_line=_SIZE_CHECKED_FROM)


def read_csv(path: Path, limits: UsageLimits = DEFAULT_LIMITS) -> Iterator[Row]:
    """CSV with a header row; ``attributions`` as ``source:weight;source:weight``."""
    # Bytes that are not UTF-8 are read as lone surrogates and reported per row, with the
    # row's line number, instead of failing the whole file at the first one.
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        for raw in reader:
            number = reader.line_num
            where = f"line {number} of {path.name}"
            bad = _undecodable(raw, where)
            if bad is not None:
                yield Row(line=number, event=None, problems=(bad,))
                continue
            fields: dict[str, Any] = {k: v for k, v in raw.items() if k and v not in (None, "")}
            problems = []
            for name in _INTEGERS:
                if name in fields:
                    try:
                        fields[name] = int(fields[name])
                    except ValueError:
                        problems.append(ValidationError(name, fields[name], "must be an integer", where))
            for name in ("attributions", "replacement_attributions"):
                if name in fields:
                    pairs = [p.rsplit(":", 1) for p in fields[name].split(";") if p]
                    fields[name] = [{"source_id": s, "weight": w} for s, w in (p if len(p) == 2 else (p[0], None) for p in pairs)]
            if problems:
                yield Row(line=number, event=None, problems=tuple(problems))
                continue
            event, found = row_to_event(fields, limits)
            yield Row(line=number, event=event, problems=tuple(p.at(where) for p in found),
                      size=sum(len(v) for v in raw.values() if isinstance(v, str)))


def _undecodable(raw: dict[str | None, Any], where: str) -> ValidationError | None:
    """The problem of a CSV row (read with ``surrogateescape``) holding bytes that are not UTF-8."""
    for value in (*raw.keys(), *raw.values()):
        if isinstance(value, str):
            data = value.encode("utf-8", "surrogateescape")
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return _not_utf8(data, exc, where)
    return None


def read_rows(path: Path, limits: UsageLimits = DEFAULT_LIMITS) -> Iterator[Row]:
    if path.suffix.lower() == ".csv":
        return read_csv(path, limits)
    return read_jsonl(path, limits)


def count_rows(path: Path) -> int:
    """Lines of ``path`` that may hold a row (a cheap first pass for the progress bar)."""
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if path.suffix.lower() == ".csv" and lines else lines


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitOutcome:
    """What `emit` did with a file.

    Attributes:
        rows: rows read (blank lines are not rows).
        valid: rows that passed validation.
        rejected: rows with at least one problem; each problem was reported.
        sent: events delivered to Kafka (acknowledged; 0 on a dry run or when
            ``all_or_nothing`` held everything back).
        held_back: True when valid rows were not sent because another row was bad.
        failure: why sending stopped part-way (the broker could not be reached or did
            not acknowledge a record); ``sent`` counts what Kafka took before it.
    """

    rows: int
    valid: int
    rejected: int
    sent: int
    held_back: bool = False
    failure: LearnrightError | None = None


def send_file(
    path: Path,
    connect: Callable[[], "UsageEmitter"],
    *,
    report: Callable[[ValidationError], None],
    all_or_nothing: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    limits: UsageLimits = DEFAULT_LIMITS,
) -> EmitOutcome:
    """Validates every row of ``path`` and sends the valid ones, reporting each problem.

    By default valid rows are sent as the file streams by, so a bad row costs only
    itself. ``all_or_nothing`` validates the whole file first and sends nothing
    unless every row is valid; ``dry_run`` validates only and never connects.
    ``connect`` is called only when something will be sent. Validation includes the
    encoded size, so a row that passes ``--dry-run`` is never refused by Kafka for it,
    and the ledger's bounds on plausible usage (``limits``; ``occurred_at`` against now).

    A failure to reach Kafka or to have a record acknowledged does not raise: it ends
    the sending and comes back as ``EmitOutcome.failure``, with what was sent before it.
    """
    from tqdm import tqdm

    catalog = default_catalog()

    def rows(desc: str) -> Iterator[Row]:
        read = read_rows(path, limits)
        if progress:
            read = tqdm(read, desc=desc, unit="row", total=count_rows(path))
        return (row if row.size <= _SIZE_CHECKED_FROM else _sized(row, catalog, path) for row in read)

    def valid(desc: str) -> Iterator[Iterable[UsageEvent]]:
        if path.suffix.lower() == ".csv":
            return iter((_valid_events(rows(desc), report, tally),))
        bar = tqdm(desc=desc, unit="row", total=count_rows(path)) if progress else None
        return _valid_blocks(path, limits, report, tally, catalog, bar)

    tally = _Tally()
    if dry_run or all_or_nothing:
        for _ in valid("validate"):
            pass
        if dry_run or tally.rejected:
            return EmitOutcome(rows=tally.rows, valid=tally.valid, rejected=tally.rejected, sent=0,
                               held_back=not dry_run and tally.valid > 0)
        return _send(connect, iter(((_unchanged(row, path) for row in rows("send")),)), tally)
    return _send(connect, valid("emit"), tally)


def _send(connect: Callable[[], "UsageEmitter"], blocks: Iterator[Iterable[UsageEvent]], tally: "_Tally") -> EmitOutcome:
    """Sends each of ``blocks`` (events read and validated as the file streams by) through ``send_events``."""
    emitter = None
    try:
        with connect() as emitter:
            for events in blocks:
                emitter.send_events(events)
            emitter.flush()
    except Transient as exc:  # the broker, a delivery or the schema registry failed: report what was sent
        return EmitOutcome(rows=tally.rows, valid=tally.valid, rejected=tally.rejected,
                           sent=emitter.acknowledged if emitter is not None else 0, failure=exc)
    return EmitOutcome(rows=tally.rows, valid=tally.valid, rejected=tally.rejected, sent=emitter.acknowledged)


def _unchanged(row: Row, path: Path) -> UsageEvent:
    if row.event is None:
        raise ConfigError(f"{path} changed while being sent: line {row.line} is no longer valid")
    return row.event


_SIZE_CHECKED_FROM = MAX_EVENT_BYTES // 4
"""Bytes of a row's text from which its event is encoded to check its size (see :func:`_sized`)."""


def _sized(row: Row, catalog: Catalog, path: Path) -> Row:
    """``row``, or a bad row when its event encodes past :data:`MAX_EVENT_BYTES`.

    Only rows whose text is over a quarter of the limit are encoded to check: an event
    encodes to less than twice the bytes of its JSON or CSV text.
    """
    if row.event is None or row.size <= _SIZE_CHECKED_FROM:
        return row
    problem = oversize_problem(row.event, encode_event(row.event, catalog), f"line {row.line} of {path.name}")
    return row if problem is None else Row(line=row.line, event=None, problems=(problem,), size=row.size)


@dataclass(slots=True)
class _Tally:
    rows: int = 0
    valid: int = 0
    rejected: int = 0


def _valid_blocks(path: Path, limits: UsageLimits, report: Callable[[ValidationError], None], tally: _Tally,
                  catalog: Catalog, bar: Any = None) -> Iterator[list[UsageEvent]]:
    """The valid events of each block of a JSON Lines file, reporting every problem of the others and counting both.

    What :func:`_valid_events` of :func:`read_jsonl`'s rows gives, a block at a time and
    without a :class:`Row` per line: a block the native reader read whole is passed on as
    it is. Every other line takes :func:`_read_line` and :func:`_sized`, as there.
    """
    name = path.name
    try:
        for first, lines, events in _jsonl_blocks(path, limits):
            before = tally.rows
            if all(map(is_not, events, repeat(None))):  # every line read natively (the common case)
                tally.rows += len(events)
                tally.valid += len(events)
                valid = events
            else:
                valid = []
                for number, data, event in zip(count(first), lines, events):
                    if event is None:
                        row = _read_line(data, number, name, limits)
                        if row is None:
                            continue
                        if row.size > _SIZE_CHECKED_FROM:
                            row = _sized(row, catalog, path)
                        if row.problems:
                            tally.rows += 1
                            tally.rejected += 1
                            for problem in row.problems:
                                report(problem)
                            continue
                        event = row.event
                    tally.rows += 1
                    tally.valid += 1
                    valid.append(event)
            if bar is not None:
                bar.update(tally.rows - before)
            yield valid
    finally:
        if bar is not None:
            bar.close()


def _valid_events(rows: Iterator[Row], report: Callable[[ValidationError], None], tally: _Tally) -> Iterator[UsageEvent]:
    """Yields the valid rows' events, reporting every problem of the others and counting both."""
    for row in rows:
        tally.rows += 1
        if row.problems:
            tally.rejected += 1
            for problem in row.problems:
                report(problem)
        else:
            tally.valid += 1
            yield row.event
