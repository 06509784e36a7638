"""The same records give the same commitments, however they interleave and batch.

Kafka orders records within a partition only. Across topics and partitions a ledger
sees them in whatever order its polls return them, cut into batches by poll timing and
``max_batch``; a correction may come before or after its original, a license may be
applied before or after the usage it prices was quarantined, and the quarantine may be
replayed at any point. None of it may change an entry, a close root or a statement.

The records are those of the broker test (:mod:`tests.consumers.reproducible_helpers`),
fed by hand through the reference batch builder into a DuckDB ledger; no broker.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.batch import RawRecord, build_batch
from consumers.replay import replay_pending_corrections, replay_quarantine
from ledger.core.chain import stream_of
from ledger.storage.store import Ledger
from schemas import default_catalog
from tests.consumers.reproducible_helpers import BOOK, LATE_BOOK, MONTHS, close_months, raw_records, workload

PLAN = workload(seed=23, size=30)
IN_PRODUCE_ORDER = raw_records(PLAN)
LOGS = [[r for r in IN_PRODUCE_ORDER if (r.topic, r.partition) == where]
        for where in sorted({(r.topic, r.partition) for r in IN_PRODUCE_ORDER})]
"""One list of records per topic-partition, in offset order."""


def origin(what: str) -> str:
    """The ``<stream>@<position>#`` every entry key of the record the plan describes as ``what``."""
    (record,) = [r for r, p in zip(IN_PRODUCE_ORDER, PLAN) if p.what == what]
    return f"{stream_of(record.topic, record.partition)}@{record.offset}#"


@dataclass(frozen=True, slots=True, kw_only=True)
class Commitments:
    roots: dict[str, str]
    statements: dict[str, str]
    """Content hash by ``<period>/<holder>/<currency>``."""
    entries: frozenset[tuple[str, str]]
    """(entry key, entry hash) of every entry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """How one ledger sees the records: which batches, and when the license and replays come."""

    batches: tuple[tuple[RawRecord, ...], ...]
    late_license_before: int
    """The batch before which the late license is applied (len(batches): after the last)."""
    replay_all_before: int | None
    """The batch before which the whole quarantine is replayed, as `learnright quarantine replay` does."""
    eager_corrections: bool
    """Replay pending corrections after every batch, as the consumer does after one that booked events."""


def book(schedule: Schedule) -> Commitments:
    """Books the records as ``schedule`` says into a fresh ledger, closes both months, returns the commitments."""
    catalog = default_catalog()
    with tempfile.TemporaryDirectory() as scratch, Ledger.open(Path(scratch) / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        for n, records in enumerate(schedule.batches):
            if n == schedule.late_license_before:
                ledger.apply_licenses(LATE_BOOK, "late.toml")
            if n == schedule.replay_all_before:
                replay_quarantine(ledger, catalog=catalog)
            ledger.append_batch(build_batch(records, ledger.load_book(), ledger, catalog))
            if schedule.eager_corrections:
                replay_pending_corrections(ledger, catalog)
        ledger.apply_licenses(LATE_BOOK, "late.toml")  # applying the same document again adds nothing
        close_months(ledger)
        return Commitments(
            roots={period: ledger.get_close(period).root for period in MONTHS},
            statements={f"{r.period}/{r.holder_id}/{r.currency}": r.content_hash
                        for period in MONTHS for r in ledger.statement_rows(period=period)},
            entries=frozenset(ledger.query("SELECT entry_key, entry_hash FROM audit_ledger")),
        )


@functools.cache
def reference() -> Commitments:
    """The records in the order they were produced, in one batch, the late license after them."""
    return book(Schedule(batches=(tuple(IN_PRODUCE_ORDER),), late_license_before=1, replay_all_before=None,
                         eager_corrections=False))


@st.composite
def schedules(draw) -> Schedule:
    """A random interleaving that keeps each partition's offset order, cut into random batches."""
    lanes = [n for n, log in enumerate(LOGS) for _ in log]
    order = draw(st.permutations(lanes))
    cursors = [0] * len(LOGS)
    records = []
    for lane in order:
        records.append(LOGS[lane][cursors[lane]])
        cursors[lane] += 1
    cuts = draw(st.sets(st.integers(1, len(records) - 1), max_size=10))
    bounds = [0, *sorted(cuts), len(records)]
    batches = tuple(tuple(records[a:b]) for a, b in zip(bounds, bounds[1:]))
    return Schedule(
        batches=batches,
        late_license_before=draw(st.integers(0, len(batches))),
        replay_all_before=draw(st.none() | st.integers(0, len(batches) - 1)),
        eager_corrections=draw(st.booleans()),
    )


def test_the_reference_books_every_case_the_log_holds():
    booked = reference()
    keys = {key for key, _ in booked.entries}
    assert all(root for root in booked.roots.values())
    # The correction produced before its original and the one of an event priced only
    # after the late license both applied: each reversed its original and replaced it.
    for what in ("correction before its original", "correction of an unlicensed event"):
        assert len([key for key in keys if key.startswith(origin(what))]) >= 2, what
    assert {"2026-03/h-lea/USD", "2026-04/h-lea/USD"} <= booked.statements.keys()  # src-late was booked
    assert "2026-04/h-kei/USD" in booked.statements  # the pool and royalty lines of the revenue reports


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schedules())
def test_any_interleaving_and_batching_gives_the_same_commitments(schedule: Schedule):
    booked = book(schedule)
    expected = reference()
    missing, extra = sorted(expected.entries - booked.entries), sorted(booked.entries - expected.entries)
    assert booked.entries == expected.entries, f"missing {missing[:3]}, extra {extra[:3]}"
    assert booked.statements == expected.statements
    assert booked.roots == expected.roots
