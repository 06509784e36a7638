"""`learnright rebuild`: re-derive every close from the event log and compare it with the live ledger.

The usage topics are read from their earliest offsets into a scratch ledger. For each
close of the live ledger, in period order, the scratch ledger is brought to where the
live one stood when it closed:

  * the live ledger's license documents are applied again (same body and origin, in
    applied order), each at the offsets the live ledger had booked when it was applied
    (``booked_offsets``), until the scratch book is the one the close used;
  * every partition is booked up to the close's cut-off, never past it: a plain
    consumer with manual assignment, no group, records at or after the cut-off dropped;
  * the quarantined records every close retries are retried
    (:func:`consumers.replay.retry_before_close`), then the month is closed at the live
    close's time, signed with the live signing key.

Then the close root, every statement's content hash and every covered entry are compared.
A close reports ``match`` or its first divergences: the root (with the book and cut-off
when those differ), the first differing statement and its first differing document line,
and the first differing entry by key. Nothing is written to Kafka or to the live ledger.

A close whose records Kafka no longer holds (retention deleted them, or the log is
shorter than its cut-off) cannot be rebuilt: the report names the partitions and offset
ranges instead of a false mismatch, and every later close (its root chains on that one)
cannot be rebuilt either. A close stored before ledger schema 7 has no cut-off and no
root to compare; so has any close after it, whose root chains on the old chain head.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from consumers.batch import PendingCorrectionError, RawRecord, build_batch, kafka_timestamp, usage_limits
from consumers.replay import replay_pending_corrections, retry_and_close
from ground.errors import BrokerError
from ground.settings import Settings
from ledger.core import chain
from ledger.core.records import CloseRecord, LicenseDocument
from ledger.core.signing import Signer
from ledger.core.usage import DEFAULT_LIMITS, UsageLimits
from ledger.storage.store import Ledger
from schemas import Catalog, default_catalog
from schemas.registry import SchemaRegistry

Position = tuple[str, int]
"""(topic, partition)."""

MATCH = "match"
DIVERGES = "DIVERGES"
DELETED = "cannot rebuild: records deleted"
AFTER_DELETED = "cannot rebuild: an earlier close's records were deleted"
PREDATES = "predates reproducible closes"
AFTER_PREDATES = "not comparable: its root chains on a close that predates reproducible closes"

CHUNK = 50_000
"""Covered entries compared at a time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingRange:
    """Offsets ``first``..``end - 1`` of a partition that a close covered and Kafka no longer holds."""

    topic: str
    partition: int
    first: int
    end: int
    why: str
    """``deleted`` (below the partition's earliest offset) or ``beyond the log's end``."""

    def describe(self) -> str:
        return f"{self.topic}/{self.partition} offsets {self.first}-{self.end - 1} ({self.why})"


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseCheck:
    """What the rebuild found for one close of the live ledger."""

    period: str
    verdict: str
    """One of MATCH, DIVERGES, DELETED, AFTER_DELETED, PREDATES, AFTER_PREDATES."""
    root: str | None
    statements: int
    details: tuple[str, ...] = ()
    """The divergences (or the missing ranges), one per line, most telling first."""

    def lines(self) -> list[str]:
        """The report of this close as stable text: a head line, then its details indented."""
        if self.verdict == MATCH:
            head = f"{self.period}: match (root {self.root[:16]}, {self.statements} statements)"
        else:
            head = f"{self.period}: {self.verdict}"
        return [head, *(f"  {detail}" for detail in self.details)]


@dataclass(frozen=True, slots=True, kw_only=True)
class RebuildReport:
    closes: tuple[CloseCheck, ...]
    records: int
    """Kafka records booked into the scratch ledger."""

    @property
    def diverged(self) -> bool:
        return any(check.verdict == DIVERGES for check in self.closes)

    @property
    def incomplete(self) -> bool:
        """Some close could not be rebuilt because Kafka no longer holds its records."""
        return any(check.verdict in (DELETED, AFTER_DELETED) for check in self.closes)


class LogReader:
    """The usage topics read by offset: up to given offsets and never past them.

    A plain consumer without a group, every partition assigned by hand and read from
    where the last read stopped (offset 0 at first). Kafka's earliest and latest offsets
    are taken once, when it is opened, to say which records are gone.

    Raises:
        BrokerError: Kafka cannot be reached.
    """

    def __init__(self, bootstrap: str, topics: Sequence[str], *, client_id: str, max_poll: int, idle_timeout_s: float):
        self.idle_timeout_s = idle_timeout_s
        self.max_poll = max_poll
        try:
            self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, client_id=client_id,
                                          enable_auto_commit=False, auto_offset_reset="earliest",
                                          max_poll_records=max_poll, allow_auto_create_topics=False)
            existing = self.consumer.topics()
            self.partitions = [TopicPartition(topic, partition) for topic in sorted(set(topics)) if topic in existing
                               for partition in sorted(self.consumer.partitions_for_topic(topic))]
            self.consumer.assign(self.partitions)
            self.earliest = {(tp.topic, tp.partition): offset
                             for tp, offset in self.consumer.beginning_offsets(self.partitions).items()}
            self.latest = {(tp.topic, tp.partition): offset
                           for tp, offset in self.consumer.end_offsets(self.partitions).items()}
        except KafkaError as exc:
            raise BrokerError(f"cannot read the usage topics from Kafka at {bootstrap}: {exc}") from exc
        if self.partitions:
            self.consumer.pause(*self.partitions)
        self.next: dict[Position, int] = {}
        """The next offset to book per partition: what has been read so far."""

    def close(self) -> None:
        self.consumer.close()

    def missing(self, upto: Mapping[Position, int]) -> list[MissingRange]:
        """The records below ``upto`` not read yet that Kafka no longer holds."""
        gone = []
        for (topic, partition), end in sorted(upto.items()):
            first = self.next.get((topic, partition), 0)
            if end <= first:
                continue
            earliest = self.earliest.get((topic, partition))
            latest = self.latest.get((topic, partition), 0)
            if earliest is None:
                gone.append(MissingRange(topic=topic, partition=partition, first=first, end=end,
                                         why="the partition does not exist"))
                continue
            if earliest > first:
                gone.append(MissingRange(topic=topic, partition=partition, first=first, end=min(earliest, end),
                                         why=f"deleted; the earliest offset is {earliest}"))
            if latest < end:
                gone.append(MissingRange(topic=topic, partition=partition, first=max(first, latest), end=end,
                                         why=f"beyond the log's end at {latest}"))
        return gone

    def read(self, upto: Mapping[Position, int], batch_size: int) -> Iterator[list[RawRecord]]:
        """The records from where each partition was left up to ``upto`` (exclusive), in batches.

        Check :meth:`missing` first. Records at or after ``upto`` are dropped; the next
        read starts exactly at ``upto``.

        Raises:
            BrokerError: Kafka gave no records for ``idle_timeout_s`` while some were still due.
        """
        wanted = {key: end for key, end in upto.items() if end > self.next.get(key, 0)}
        for (topic, partition), _ in wanted.items():
            tp = TopicPartition(topic, partition)
            self.consumer.seek(tp, self.next.get((topic, partition), 0))
            self.consumer.resume(tp)
        batch: list[RawRecord] = []
        deadline = time.monotonic() + self.idle_timeout_s
        try:
            while wanted:
                polled = self.consumer.poll(timeout_ms=200, max_records=self.max_poll)
                if polled:
                    deadline = time.monotonic() + self.idle_timeout_s
                for tp, records in polled.items():
                    key = (tp.topic, tp.partition)
                    end = wanted.get(key)
                    if end is None:
                        continue
                    for r in records:
                        if r.offset >= end:
                            break
                        batch.append(RawRecord(
                            topic=r.topic, partition=r.partition, offset=r.offset,
                            timestamp=kafka_timestamp(r.timestamp), key=r.key, value=r.value,
                            headers=tuple((k, v or b"") for k, v in (r.headers or ()))))
                        self.next[key] = r.offset + 1
                for key, end in list(wanted.items()):
                    tp = TopicPartition(*key)
                    if self.next.get(key, 0) >= end or (self.consumer.position(tp) or 0) >= end:
                        self.next[key] = end  # offsets without a record (a transaction marker) are passed too
                        self.consumer.pause(tp)
                        del wanted[key]
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
                if wanted and not polled and time.monotonic() > deadline:
                    short = ", ".join(f"{t}/{p} at {self.next.get((t, p), 0)} of {end}" for (t, p), end in
                                      sorted(wanted.items()))
                    raise BrokerError(f"Kafka gave no records for {self.idle_timeout_s}s while some were due: {short}")
        except KafkaError as exc:
            raise BrokerError(f"reading the usage topics failed: {exc}") from exc
        if batch:
            yield batch


class Rebuild:
    """One rebuild of ``live`` into ``scratch`` from ``log``; :meth:`run` does it and reports."""

    def __init__(self, live: Ledger, scratch: Ledger, log: LogReader, *, signer: Signer,
                 catalog: Catalog | None = None, registry: SchemaRegistry | None = None,
                 limits: UsageLimits = DEFAULT_LIMITS, batch_size: int = 5000,
                 memory_limit: str | None = None, workers: int | None = None):
        self.live = live
        self.scratch = scratch
        self.log = log
        self.signer = signer
        self.catalog = catalog or default_catalog()
        self.registry = registry
        self.limits = limits
        self.batch_size = batch_size
        self.memory_limit = memory_limit
        """DuckDB's memory limit for each scratch close (``close.memory_limit``), as a live close has."""
        self.workers = workers
        """The processes that build each scratch close's statements (``close.workers``)."""
        self.records = 0

    def run(self) -> RebuildReport:
        documents = deque(self.live.license_documents())
        checks: list[CloseCheck] = []
        blocked: str | None = None  # why no later close can be rebuilt
        previous: CloseRecord | None = None
        for close in self.live.closes():
            if close.root is None or blocked is not None:
                verdict = PREDATES if close.root is None else blocked
                checks.append(CloseCheck(period=close.period, verdict=verdict, root=close.root,
                                         statements=close.statements))
                blocked = blocked or AFTER_PREDATES
                continue
            cutoff = self.live.close_cutoff(close.period)
            gone = self.log.missing(cutoff)
            if gone:
                checks.append(CloseCheck(period=close.period, verdict=DELETED, root=close.root,
                                         statements=close.statements, details=tuple(g.describe() for g in gone)))
                blocked = AFTER_DELETED
                continue
            self._apply_documents(documents, close, cutoff)
            self._book(cutoff)
            _, outcome = retry_and_close(self.scratch, close.period, now=close.closed_at, signer=self.signer,
                                         catalog=self.catalog, registry=self.registry, limits=self.limits,
                                         memory_limit=self.memory_limit, workers=self.workers)
            extra = [p for p in outcome.closed_periods if p != close.period]
            checks.append(self._compare(close, previous, cutoff, extra))
            previous = close
        return RebuildReport(closes=tuple(checks), records=self.records)

    def _apply_documents(self, documents: deque[LicenseDocument], close: CloseRecord,
                         cutoff: Mapping[Position, int]) -> None:
        """Applies the next documents, each at its booked offsets, until the book is the close's."""
        while documents and self.scratch.book_hash() != close.book_hash:
            at = documents[0].booked_offsets or {}  # none recorded (before schema 7): where the rebuild stands
            if any(offset > cutoff.get(key, 0) for key, offset in at.items()):
                return  # applied after this close: the book differs, the comparison says so
            self._book(at)
            document = documents.popleft()
            self.scratch.apply_licenses(document.body, document.origin)

    def _book(self, upto: Mapping[Position, int]) -> None:
        """Books every partition up to ``upto`` as the consumer would, batch by batch (reference path)."""
        for records in self.log.read(upto, self.batch_size):
            batch = build_batch(records, self.scratch.load_book(), self.scratch, self.catalog, self.registry,
                                self.limits)
            self.scratch.append_batch(batch)
            self.records += len(records)
            if batch.event_count and self.scratch.open_quarantine_count(PendingCorrectionError.code):
                replay_pending_corrections(self.scratch, self.catalog, self.registry, self.limits)

    def _compare(self, close: CloseRecord, previous: CloseRecord | None, cutoff: Mapping[Position, int],
                 extra: list[str]) -> CloseCheck:
        """The live close against the scratch one: root, statements, covered entries."""
        period = close.period
        rebuilt = self.scratch.get_close(period)
        details = []
        if extra:
            details.append(f"the rebuild also closed {', '.join(extra)}, which the live ledger did not close")
        if rebuilt.root != close.root:
            details.append(f"root: live {close.root[:16]}, rebuilt {rebuilt.root[:16]}")
            if rebuilt.book_hash != close.book_hash:
                details.append(f"license book: live {close.book_hash[:16]}, rebuilt {rebuilt.book_hash[:16]}")
            scratch_cutoff = self.scratch.close_cutoff(period)
            if scratch_cutoff != dict(cutoff):
                key = min(k for k in set(cutoff) | set(scratch_cutoff) if cutoff.get(k) != scratch_cutoff.get(k))
                details.append(f"cut-off of {key[0]}/{key[1]}: live {cutoff.get(key, 0)},"
                               f" rebuilt {scratch_cutoff.get(key, 0)}")
        statement = _first_statement_difference(self.live, self.scratch, period)
        if statement:
            details.append(statement)
        scratch_previous = self.scratch.latest_close(before=period)
        entry = _first_entry_difference(
            _covered(self.live, close, previous), _covered(self.scratch, rebuilt, scratch_previous),
            committed=rebuilt.root == close.root)
        if entry:
            details.append(entry)
        return CloseCheck(period=period, verdict=DIVERGES if details else MATCH, root=close.root,
                          statements=close.statements, details=tuple(details))


def _first_statement_difference(live: Ledger, scratch: Ledger, period: str) -> str | None:
    """The first statement (by id) whose content hash differs, with its first differing document line."""
    ours = {s.statement_id: s for s in live.stored_statements(period)}
    theirs = {s.statement_id: s for s in scratch.stored_statements(period)}
    differing = [sid for sid in sorted(set(ours) | set(theirs))
                 if sid not in ours or sid not in theirs or ours[sid].content_hash != theirs[sid].content_hash]
    if not differing:
        return None
    sid = differing[0]
    more = f" ({len(differing) - 1} more statements differ)" if len(differing) > 1 else ""
    if sid not in theirs:
        return f"statement {sid}: only in the live ledger{more}"
    if sid not in ours:
        return f"statement {sid}: only in the rebuilt ledger{more}"
    a, b = ours[sid], theirs[sid]
    where = f"statement {sid} (holder {a.holder_id}, {a.currency}): content hash live {a.content_hash[:16]}," \
            f" rebuilt {b.content_hash[:16]}"
    live_lines, rebuilt_lines = a.document.splitlines(), b.document.splitlines()
    for number, (x, y) in enumerate(zip(live_lines, rebuilt_lines), start=1):
        if x != y:
            return f"{where}; line {number}: live {x.strip()}, rebuilt {y.strip()}{more}"
    number = min(len(live_lines), len(rebuilt_lines)) + 1
    return f"{where}; line {number}: one document ends there{more}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    key: tuple[str, int, int]
    values: tuple
    stored_hash: str | None
    """The digest stored with the entry (booked before schema 14), else None."""


def _covered(ledger: Ledger, close: CloseRecord, previous: CloseRecord | None) -> Iterator[_Entry]:
    """The entries ``close`` covers in ``ledger``, in (stream, position, line) order, read in chunks."""
    columns = ", ".join(chain.ENTRY_FIELDS)
    after = ("", -1, -1)
    while True:
        rows = ledger.query(
            f"SELECT {columns}, entry_hash FROM accruals"
            " WHERE entry_id <= ? AND (period = ? OR (period < ? AND entry_id > ?))"
            " AND stream IS NOT NULL AND (stream, position, line) > (?, ?, ?)"
            f" ORDER BY stream, position, line LIMIT {CHUNK}",
            [close.last_entry_id, close.period, close.period, previous.last_entry_id if previous else 0, *after])
        for row in rows:
            yield _Entry(key=(row[0], row[1], row[2]), values=tuple(row[:-1]), stored_hash=row[-1])
        if len(rows) < CHUNK:
            return
        after = (rows[-1][0], rows[-1][1], rows[-1][2])


def _first_entry_difference(live: Iterator[_Entry], rebuilt: Iterator[_Entry], *, committed: bool) -> str | None:
    """The first covered entry that is not the same in both, by key: missing on one side, or which field differs.

    ``committed``: the live close's stored root is the rebuilt one, so the close committed to
    the rebuilt entries and a differing live entry was changed after it. An entry booked
    before schema 14 also has its stored digest, which names an edit after booking.
    """
    a, b = next(live, None), next(rebuilt, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.key < b.key):
            return f"entry {chain.entry_key(*a.key)}: only in the live ledger"
        if a is None or b.key < a.key:
            return f"entry {chain.entry_key(*b.key)}: only in the rebuilt ledger"
        if chain.digest(a.values) != chain.digest(b.values):
            field, x, y = next((f, x, y) for f, x, y in zip(chain.ENTRY_FIELDS, a.values, b.values) if x != y)
            if a.stored_hash is not None and a.stored_hash == chain.digest(b.values):
                note = "; its stored hash is the rebuilt entry's: the live file was changed after booking"
            elif committed:
                note = "; the close's root commits to the rebuilt entry: the live file was changed after the close"
            else:
                note = ""
            return f"entry {chain.entry_key(*a.key)}: {field} live {x}, rebuilt {y}{note}"
        a, b = next(live, None), next(rebuilt, None)
    return None


def rebuild_topics(settings: Settings, live: Ledger) -> tuple[str, ...]:
    """The topics a rebuild reads: the configured usage topics and any the live ledger's cut-offs name."""
    named = {topic for close in live.closes() for topic, _ in live.close_cutoff(close.period)}
    named |= {topic for document in live.license_documents() for topic, _ in (document.booked_offsets or {})}
    return tuple(sorted(set(settings.kafka.topics.usage) | named))


def rebuild(settings: Settings, live: Ledger, scratch: Ledger, signer: Signer) -> RebuildReport:
    """Rebuilds ``live`` into the empty ``scratch`` from the Kafka of ``settings`` and compares every close.

    ``settings`` must name the broker (``bootstrap_servers``); its consumer limits are the
    live consumer's, so records are accepted and quarantined as they were.

    Raises:
        BrokerError: Kafka cannot be reached, or stops giving records a close needs.
    """
    consumer = settings.consumer
    log = LogReader(settings.kafka.bootstrap_servers, rebuild_topics(settings, live),
                    client_id=f"{settings.kafka.client_id}-rebuild", max_poll=consumer.max_poll,
                    idle_timeout_s=consumer.idle_timeout_s)
    try:
        registry = SchemaRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
        return Rebuild(live, scratch, log, signer=signer, registry=registry, limits=usage_limits(consumer),
                       batch_size=consumer.max_poll, memory_limit=settings.close.memory_limit,
                       workers=settings.close.workers).run()
    finally:
        log.close()
