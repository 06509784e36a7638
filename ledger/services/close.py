"""Closing a month: the one service function the CLI and the scheduler both call.

Guarantees:
  * Idempotent: closing a closed period returns its stored statements unchanged.
  * Ordered: periods close in increasing order; closing a month first closes every
    earlier month that has unclosed accruals.
  * A closed statement never changes: usage of a closed month that arrives later is
    covered by the next close as a prior-period adjustment line.
  * A period is decided by the event's occurred_at, never by the wall clock; the clock
    only says whether a month has ended.
  * Period terms (tier adjustments, minimum top-ups, pool shares, model royalties, see
    :mod:`ledger.core.period_terms`) are appended to the ledger as entries of the close's
    own stream in the same transaction as the close and its statements, and summed like
    any other line. They are a pure function of the ledger at the close's start, so a
    close that rolled back and runs again gives the same entries, hashes and statements.
  * Each close commits to what it covers (:mod:`ledger.core.chain`): its cut-off (the
    next offset per partition the ledger had booked), the license book, every stream's
    head and a root over them, which its statements carry. None of it depends on how
    the log was batched or interleaved, so a rebuild from the log gives the same bytes.
  * Every statement is signed (Ed25519, deterministic) over its canonical bytes in the
    same transaction, so a rerun gives the same signatures too. Statements are built and
    signed as the transaction stores them, a chunk at a time, so a close holds a chunk of
    documents, not the month's; no PDF is rendered by a close (only when one is asked for).
  * Each statement is stored unpublished: its StatementClosed event is sent after the
    transaction commits, by :mod:`consumers.publisher`, which records what the broker
    acknowledged (an outbox; nothing is lost when the broker is down).
  * Unlicensed use (:mod:`ledger.core.unlicensed`) is listed on the statement of its
    holder and the ended license's currency, by the first close whose cut-off covers it;
    a holder with nothing else that month gets a statement for it.
  * Each revenue report is settled by exactly one close: the first whose month is at
    or after the report's; a report arriving after its month closed is settled by the
    next close as a prior-period line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from ground.collection import collection_paused
from ledger.core import chain
from ledger.core.dsr import platforms, render_dsr
from ledger.core.envelope import render_envelope
from ledger.core.filenames import check_distinct, member_statement_file_name, statement_file_name, usage_report_name
from ledger.errors import CloseMemoryError, LedgerFileError, PeriodError
from ledger.core.period_terms import PeriodLine, period_lines, term_sources
from ledger.core.periods import check_period, next_period, period_end, periods_between, previous_period
from ledger.core.signing import Signer
from ledger.core.statements import StatementLine, render_csv, rendered, statement_renderings, to_document
from ledger.core.licenses import LicenseBook
from ledger.core.unlicensed import by_holder_and_currency
from ledger.core.port import LedgerStore, StatementLineRange, memory_limited
from ledger.core.records import (ClosedDistribution, CloseCommitment, CloseRecord, PlannedEntries, SignedStatement,
                                 StreamHead)
from ledger.services.distributions import (
    collective_portions, distribute_collective, member_statement_file, sign_member_statements,
)
from ledger.services.statement_workers import (built_statement, sealed, signed_in_workers, statement_groups,
                                               statement_pool)


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseOutcome:
    period: str
    already_closed: bool
    statement_ids: tuple[str, ...]
    closed_periods: tuple[str, ...]


def months_to_catch_up(ledger: LedgerStore, period: str, last_closed: str | None) -> list[str]:
    """The months before ``period`` that must close first, oldest first.

    After a close: every calendar month since it. Before the first close: every month
    from the first one with accruals (earlier months have nothing to state).
    """
    if last_closed is None:
        active = ledger.open_periods_through(previous_period(period), None)
        if not active:
            return []
        first = active[0]
    else:
        first = next_period(last_closed)
    return list(periods_between(first, period))


def close_period(ledger: LedgerStore, period: str, *, now: datetime, signer: Signer,
                 memory_limit: str | None = None, workers: int | None = None) -> CloseOutcome:
    """Closes ``period`` (and every earlier month not closed yet) and stores signed statements.

    Every calendar month after the last close is closed in order, with or without usage:
    a month without usage can still owe a minimum guarantee or carry a balance.

    ``memory_limit`` (``close.memory_limit`` of the settings; None: the ledger's as it is) caps
    the storage engine's memory while each month's statements are built and stored, from after
    its license book is read (a large document's stored form is read in one piece) until it
    commits; the limit before is restored after. Past it the close's uncommitted rows spill to
    disk: the bytes stored are the same with any limit.

    ``workers`` processes build, render and sign the statements of a month beside the close
    (:mod:`ledger.services.statement_workers`; 1: the close's own process does). None: one per
    core for a month of at least :data:`PARALLEL_ENTRIES` covered entries, else 1 (starting them
    takes about a second). The bytes stored are the same with any number.

    A close that runs out of memory (DuckDB could not pin a block: how much the sorted lines and
    the uncommitted statements need together depends on the month's shape) has stored nothing; it
    is run again once under the storage engine's default limit (DuckDB's: 80% of the machine's
    memory), and a warning names the limit that was too small. Months closed before the failure
    stay closed (each commits on its own); the retry starts after them. The bytes stored are the
    same either way.

    Raises:
        PeriodError: ``period`` is not ``YYYY-MM``, the month has not ended at ``now``, or a
            later month is already closed.
        CloseMemoryError: the close ran out of memory under the engine's default limit as well.
    """
    check_period(period)
    ends = period_end(period)
    if now < ends:
        raise PeriodError(f"period {period} has not ended: it ends at {ends.isoformat()} and it is {now.isoformat()}")
    tried = f"close.memory_limit {memory_limit}" if memory_limit is not None else "the ledger's own memory limit"
    with ledger.closing():  # one close at a time, and no append meanwhile, in a cluster of writers
        try:
            return _close_through(ledger, period, now=now, signer=signer, memory_limit=memory_limit, workers=workers)
        except Exception as error:
            if not ledger.out_of_memory(error):
                raise
            roomy = ledger.engine_memory_limit()
            log.warning("closing %s ran out of memory under %s (%s); nothing of it was stored. Closing it again"
                        " under %s, the storage engine's default: raise close.memory_limit to keep closes of months"
                        " like this one under it", period, tried, _first_line(error), roomy)
        try:
            return _close_through(ledger, period, now=now, signer=signer, memory_limit=roomy, workers=workers)
        except Exception as error:
            if ledger.out_of_memory(error):
                raise CloseMemoryError(f"closing {period} ran out of memory under {tried} and again under {roomy};"
                                       f" nothing of it was stored: {_first_line(error)}") from error
            raise


def _first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (DuckDB's go on with generic advice)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _close_through(ledger: LedgerStore, period: str, *, now: datetime, signer: Signer,
                   memory_limit: str | None, workers: int | None) -> CloseOutcome:
    """Closes ``period`` and every earlier open month (the caller holds ``ledger.closing()``)."""
    existing = ledger.get_close(period)
    if existing is not None:
        return CloseOutcome(
            period=period, already_closed=True, closed_periods=(),
            statement_ids=tuple(row.statement_id for row in ledger.statement_rows(period=period)),
        )
    latest = ledger.latest_close()
    if latest is not None and latest.period > period:
        raise PeriodError(
            f"period {period} cannot be closed: the later period {latest.period} is closed already;"
            f" usage of {period} that arrives now is booked in the next close as a prior-period adjustment"
        )
    closed = []
    for earlier in months_to_catch_up(ledger, period, latest.period if latest else None):
        _close_one(ledger, earlier, now, signer, memory_limit, workers)
        closed.append(earlier)
    ids = _close_one(ledger, period, now, signer, memory_limit, workers)
    closed.append(period)
    return CloseOutcome(period=period, already_closed=False, statement_ids=ids, closed_periods=tuple(closed))


def _period_entries(ledger: LedgerStore, period: str, watermark: int,
                    book: LicenseBook) -> tuple[tuple[PeriodLine, ...], list[tuple[str, str]]]:
    """The period lines of closing ``period`` and the revenue reports they settle."""
    revenues = ledger.unsettled_revenue(period)
    months = sorted({period, *(r.period for r in revenues)})
    lines = period_lines(
        period=period,
        book=book,
        # Only the sources with period terms: most of a large book has none (tiers, minimums, pools).
        usage=ledger.usage_totals(months, watermark, term_sources(book, revenues=bool(revenues))),
        # Only model royalties read training units, and only to split a revenue report.
        training=ledger.model_training(period, watermark) if revenues else (),
        revenues=revenues,
        lineage=ledger.model_lineage(),
    )
    return lines, [(r.platform_id, r.event_id) for r in revenues]


def _commitment(ledger: LedgerStore, period: str, planned: PlannedEntries, previous: CloseRecord | None,
                start: dict[str, tuple[int, str]], covered: dict[str, tuple[int, str]]) -> CloseCommitment:
    """What closing ``period`` commits to: its cut-off, every stream's head after it, the book and the root.

    ``start`` is every stream's (count, head) before the close, ``covered`` the streams the covered
    entries touch after folding them (:meth:`LedgerStore.covered_heads`)."""
    touched = dict(covered)
    stream = chain.close_stream(period)
    touched.update(chain.fold_streams(((stream, h) for h in planned.hashes), {**start, **touched}))
    every = {**start, **touched}
    cutoff = ledger.stored_offsets()
    book = ledger.book_hash()
    root = chain.close_root(period=period, previous_root=previous_root(previous), book=book, cutoff=cutoff,
                            heads=every)
    return CloseCommitment(
        cutoff=cutoff, heads={s: StreamHead(stream=s, entries=n, head=h) for s, (n, h) in every.items()},
        touched=tuple(sorted(touched)), book_hash=book, root=root)


def previous_root(previous: CloseRecord | None) -> str:
    """What a close's root chains on: the previous close's root (its chain head before schema 7)."""
    if previous is None:
        return chain.GENESIS
    return previous.root or previous.chain_head


PARALLEL_ENTRIES = 5_000_000
"""Covered entries from which a close builds its statements in worker processes by default (``workers`` None).

Workers pay off only where the close's own process has much else to do (the fold and the lines of
millions of entries). At 100,000 statements over 1.1M entries they lost: 76.5 s and 1,219 MB for the
process tree with 2 workers against 54.1 s and 911 MB without (docs/benchmarks.md); over 11M entries
they won, 71 s against 119 s, at 1.4 GB against 1.05 GB."""


def _workers(workers: int | None, covered_entries: int) -> int:
    """How many worker processes build a close's statements (1: none, the close's process does)."""
    if workers is not None:
        return max(1, workers)
    return max(1, os.cpu_count() or 1) if covered_entries >= PARALLEL_ENTRIES else 1


def _close_one(ledger: LedgerStore, period: str, now: datetime, signer: Signer,
               memory_limit: str | None, workers: int | None) -> tuple[str, ...]:
    before = ledger.last_entry_id
    previous = ledger.latest_close(before=period)
    start = {s: (h.entries, h.head) for s, h in ledger.stream_heads(period).items()}
    previous_watermark = previous.last_entry_id if previous else 0
    processes = _workers(workers, before - previous_watermark)
    # Millions of objects made and dropped (lines, documents) beside the book's: see ground.collection.
    with collection_paused(), ExitStack() as stack:
        # Its processes start once the book is read (:func:`_close_one_with`), long before the root: not beside
        # the book read, the close's peak of memory.
        pool = stack.enter_context(statement_pool(signer, processes)) if processes > 1 else None
        # The digests of every covered entry, computed from their fields and folded into stream heads (a
        # DuckDB scan and native work, both outside the GIL), on a thread of their own while the book is
        # read and the period lines computed: what is folded depends on the covered range alone.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="close-aside") as aside:
            covered = aside.submit(ledger.covered_heads, period, before, previous_watermark, start)
            return _close_one_with(ledger, period, now, signer, before=before, previous=previous,
                                   previous_watermark=previous_watermark, start=start, covered=covered, pool=pool,
                                   workers=processes, memory_limit=memory_limit, aside=aside, stack=stack)


def _has_collectives(book: LicenseBook) -> bool:
    """Whether a holder of ``book`` has members (a collective's split reads the ledger: built in the close's process)."""
    return any(h.members for h in book.holders.values())


def _started(first: Future, rest: Iterator[StatementLineRange]) -> Iterator[StatementLineRange]:
    """The ranges of a query started aside: ``first``'s (None: there are none), then ``rest``."""
    head = first.result()
    if head is not None:
        yield head
        yield from rest


def _close_one_with(ledger: LedgerStore, period: str, now: datetime, signer: Signer, *, before: int,
                    previous: CloseRecord | None, previous_watermark: int, start: dict[str, tuple[int, str]],
                    covered: Future, pool: ProcessPoolExecutor | None, workers: int, memory_limit: str | None,
                    aside: ThreadPoolExecutor, stack: ExitStack) -> tuple[str, ...]:
    """Closes ``period`` while ``covered`` folds on ``aside``; what must end with the close is entered on ``stack``.

    ``previous_watermark`` is ``previous``'s last entry (0 without one): the covered range starts after it.
    """
    # Read before the limit (a large document's stored form is one value read whole), and kept by the
    # process only if it was before: a close that is the process's only use of the book frees it below.
    book = ledger.load_book(keep=False)
    if pool is not None:
        pool.submit(int)  # starts the workers now (spawned: about a second; the fold takes longer)
    stack.enter_context(memory_limited(ledger, memory_limit))
    ranges = None
    if pool is not None and not _has_collectives(book):
        # The statement lines' GROUP BY (DuckDB, outside the GIL) on the other aside thread, beside the
        # fold: its first range is ready about when the root is, instead of starting after it. Closed
        # after ``aside`` has waited for it (the stack unwinds after), whatever the outcome.
        query = stack.enter_context(closing(ledger.statement_line_ranges(period, before, previous_watermark)))
        ranges = _started(aside.submit(next, query, None), query)
    lines, settled = _period_entries(ledger, period, before, book)
    planned = ledger.plan_entries(lines, period)
    commitment = _commitment(ledger, period, planned, previous, start, covered.result())
    watermark = planned.last_entry_id
    added: dict[tuple[str, str], list[StatementLine]] = {}
    for line in planned.lines:  # appended by this close, one statement line each
        added.setdefault((line.holder_id, line.currency), []).append(StatementLine(
            period=line.period, source_id=line.source_id, platform_id=line.platform_id, model_id=line.model_id,
            kind=line.kind, unit=line.unit, quantity=line.quantity, rate=line.rate, per=line.per, amount=line.amount,
            entries=1, license_id=line.license_id, license_version=line.license_version, description=line.description,
        ))
    carry = ledger.carry_ins(period)
    unlicensed = by_holder_and_currency(ledger.unlicensed_for_close(period))
    # Statements without covered lines: period lines only, a carried balance, unlicensed use.
    extra = {*added, *(key for key, amount in carry.items() if amount != 0), *unlicensed}
    collectives = _has_collectives(book)
    # Collectives only (holders with members): their split, an optional section of their statements.
    portions = collective_portions(ledger, book, period, before, previous_watermark,
                                   planned.lines) if collectives else {}
    member_carry = ledger.member_carry_ins(period) if portions else {}
    holders = book.holders
    if ranges is not None:
        # The workers need the book's holders, nothing else of it: the rest (most of a large book's
        # memory, about 300 MB at 250,000 licenses) is freed here unless the process keeps the book.
        book = None
    distributions: list[ClosedDistribution] = []
    ids: list[str] = []

    def statements() -> Iterator[SignedStatement]:
        """Each statement built, rendered and signed as the transaction stores it (a chunk at a time)."""
        if ranges is not None:  # in the workers (never with collectives: a collective's split reads the ledger)
            yield from signed_in_workers(
                pool, ranges, workers=workers,
                period=period, close_root=commitment.root, added=added, extra=extra, holders=holders,
                carry=carry, unlicensed=unlicensed)
            return
        for (holder_id, currency), lines in statement_groups(
                ledger.statement_line_groups(period, before, previous_watermark), added, extra):
            yield _signed_statement(ledger, book, period, holder_id, currency, lines, carry=carry,
                                    unlicensed=unlicensed, close_root=commitment.root, signer=signer,
                                    portions=portions, member_carry=member_carry, distributions=distributions)

    def signed() -> Iterator[SignedStatement]:
        for stored in statements():
            ids.append(stored.statement.statement_id)
            yield stored

    ledger.record_close(
        # statements: counted by record_close as they stream in
        CloseRecord(period=period, closed_at=now, last_entry_id=watermark, chain_head="", statements=0,
                    root=commitment.root, book_hash=commitment.book_hash),
        signed(),
        planned=planned,
        settled_revenue=settled,
        commitment=commitment,
        distributions=distributions,
    )
    return tuple(ids)


def _signed_statement(ledger: LedgerStore, book: LicenseBook, period: str, holder_id: str, currency: str,
                      lines: list[StatementLine], *, carry: dict[tuple[str, str], Decimal],
                      unlicensed: dict, close_root: str, signer: Signer, portions: dict,
                      member_carry: dict, distributions: list[ClosedDistribution]) -> SignedStatement:
    """One statement of a close: built, its document hashed, signed and rendered; a collective's split
    (and its members' signed statements) appended to ``distributions``."""
    holder = book.holders.get(holder_id)
    statement = built_statement(period=period, holder_id=holder_id, currency=currency, holder=holder, lines=lines,
                                carry_in=carry.get((holder_id, currency), Decimal(0)),
                                unlicensed=unlicensed.get((holder_id, currency), ()), close_root=close_root)
    # One document per statement: its canonical bytes are signed and hashed, its indented form stored.
    if holder is None or not holder.members:
        return sealed(statement, statement_renderings(statement), signer)
    document = to_document(statement)
    distribution, document["distribution"] = distribute_collective(
        ledger, book, holder, statement, portions.get((holder_id, currency), []))
    signed = sealed(statement, rendered(document), signer)
    distributions.append(sign_member_statements(
        distribution=distribution, holder=holder, collective_statement_id=statement.statement_id,
        collective_content_hash=signed.content_hash, carry=member_carry, close_root=close_root, signer=signer))
    return signed


def statement_file(ledger: LedgerStore, statement_id: str) -> bytes | None:
    """The signed JSON file of one statement (see :mod:`ledger.core.envelope`); None if there is none.

    Raises:
        LedgerFileError: the statement was closed before statements were signed.
    """
    found = ledger.statement_document(statement_id)
    if found is None:
        return None
    signed = ledger.statement_signature(statement_id)
    if signed is None:
        raise LedgerFileError(f"statement {statement_id} was closed unsigned (before format 3); it has no signed file")
    return render_envelope(json.loads(found.document), signature=signed.signature,
                           key_fingerprint=signed.key_fingerprint)


def statement_pdf(ledger: LedgerStore, statement_id: str) -> bytes | None:
    """The PDF of one signed statement; None if there is none."""
    data = statement_file(ledger, statement_id)
    if data is None:
        return None
    envelope = json.loads(data)
    from ledger.core.pdf import render_pdf  # here: reportlab (~12 MB) is loaded by what renders a PDF, not by a consumer

    return render_pdf(envelope["statement"], content_hash=envelope["content_hash"],
                      key_fingerprint=envelope["signature"]["key_fingerprint"], signature=envelope["signature"]["value"])


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedFile:
    """One file to write: its name (see :mod:`ledger.core.filenames`), what it holds, how to render it."""

    name: str
    holds: str
    render: Callable[[], bytes]


def write_statement_files(ledger: LedgerStore, period: str, directory: Path) -> list[Path]:
    """Writes every statement of ``period`` as ``<period>_<holder>_<currency>`` ``.json`` (signed), ``.csv`` and ``.pdf``,
    and every member distribution statement as ``<period>_<collective>_<member>_<currency>`` likewise.

    Raises:
        FileNameClashError: two statements would get one file name; nothing was written.
    """
    return write_files(statement_files(ledger, period), directory)


def write_usage_reports(ledger: LedgerStore, period: str, directory: Path) -> list[Path]:
    """Writes one DDEX-DSR-like report per platform of ``period``: ``<period>_<platform>.dsr.tsv``.

    Raises:
        PeriodError: ``period`` is not closed.
        FileNameClashError: two platforms would get one file name; nothing was written.
    """
    return write_files(usage_report_files(ledger, period), directory)


def write_period_files(ledger: LedgerStore, period: str, directory: Path) -> list[Path]:
    """Every file of a closed month: the statements (JSON, CSV, PDF) and the per-platform usage reports.

    Every name is planned and checked before the first file is written.

    Raises:
        PeriodError: ``period`` is not closed.
        FileNameClashError: two files would get one name; nothing was written.
    """
    return write_files(statement_files(ledger, period) + usage_report_files(ledger, period), directory)


def statement_files(ledger: LedgerStore, period: str) -> list[PlannedFile]:
    """The signed JSON, the CSV and the PDF of every statement (and member statement) of ``period``, not yet rendered."""
    planned = []
    for row in ledger.statement_rows(period=period):
        renderers = {
            "json": lambda sid=row.statement_id: statement_file(ledger, sid),
            "csv": lambda sid=row.statement_id: render_csv(json.loads(ledger.statement_document(sid).document)),
            "pdf": lambda sid=row.statement_id: statement_pdf(ledger, sid),
        }
        planned += [PlannedFile(name=statement_file_name(period, row.holder_id, row.currency, ext), render=render,
                                holds=f"the {ext} of statement {row.statement_id} (holder {row.holder_id!r},"
                                      f" {row.currency!r})")
                    for ext, render in renderers.items()]
    for member in ledger.member_statements(period=period):  # collectives' members only
        planned += [PlannedFile(name=member_statement_file_name(period, member.collective_id, member.member_id,
                                                                member.currency, ext),
                                render=lambda sid=member.statement_id, ext=ext: member_statement_file(ledger, sid, ext),
                                holds=f"the {ext} of member statement {member.statement_id} (member"
                                      f" {member.member_id!r} of {member.collective_id!r}, {member.currency!r})")
                    for ext in ("json", "csv", "pdf")]
    return planned


def usage_report_files(ledger: LedgerStore, period: str) -> list[PlannedFile]:
    """One usage report per platform of ``period``, not yet rendered.

    Raises:
        PeriodError: ``period`` is not closed.
    """
    close = ledger.get_close(period)
    if close is None:
        raise PeriodError(f"period {period} is not closed; close it before writing its usage reports")
    documents = [json.loads(ledger.statement_document(row.statement_id).document)
                 for row in ledger.statement_rows(period=period)]
    return [PlannedFile(name=usage_report_name(period, platform_id), holds=f"the usage report of platform {platform_id!r}",
                        render=lambda platform_id=platform_id: render_dsr(
                            period=period, platform_id=platform_id, documents=documents, created_at=close.closed_at,
                            close_root=close.root or close.chain_head).body)
            for platform_id in platforms(documents)]


def write_files(planned: list[PlannedFile], directory: Path) -> list[Path]:
    """Writes ``planned`` into ``directory`` once every name is known to be distinct; the paths written, in order.

    Raises:
        FileNameClashError: two names clash, also ignoring case; nothing was written.
    """
    check_distinct((file.name, file.holds) for file in planned)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file in planned:
        path = directory / file.name
        path.write_bytes(file.render())
        written.append(path)
    return written
