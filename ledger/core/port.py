"""The storage port: every operation the services, consumers and shells ask of a ledger.

One backend implements it per storage (:class:`ledger.storage.store.Ledger` over a DuckDB
file today, a DuckLake catalog later); code above the storage edge types against
:class:`LedgerStore` and never sees a connection, a cursor or SQL. Rows come back as the
frozen values of :mod:`ledger.core.records`.

What every implementation guarantees:
  * Append-only: nothing updates or deletes a stored row; corrections, revocations and
    closes are appended.
  * A batch, its accruals, its quarantined records and its consumer offsets land in one
    transaction (all or none); so do a close, its period entries and its statements.
  * Every entry is stored with its identity from the log (stream, position, line) and the
    fields its digest is computed from (:mod:`ledger.core.chain`; since ledger schema 14 the
    digest itself is not stored, entries booked before keep theirs); rows are numbered without gaps in this
    ledger's booking order, and ``last_entry_id`` is the last row number after the last
    commit (a local watermark, never hashed or signed).
  * A ledger file has one writer: a second writing process is refused (``LedgerLockedError``).
    A lake has several, each booking its own partitions; a close holds :meth:`closing`.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Collection, ContextManager, Iterable, Iterator, Mapping, Protocol, Sequence

from ledger.core.evidence import TrainingUse
from ledger.core.licenses import LicenseBook
from ledger.core.period_terms import ModelTraining, PeriodLine, UsageTotal
from ledger.core.pricing import Accrual
from ledger.core.collectives import HeldUndistributed
from ledger.core.records import (ClosedDistribution, CollectivePortion, DistributionRecord, MemberStatementRecord, BatchResult, ChainAnchor, ChainEntry, CloseCommitment, EntryScan, FormOfDocument, CloseRecord, LicenseDocument,
                                 StreamHead, IngestBatch,
                                 LedgerTotals, OpenAccruals, PlannedEntries, Publication, QuarantinedRecord,
                                 SignedStatement, StatementDocument, StatementRecord, StatementRow, StatementSignature,
                                 TokenRow)
from ledger.core.statements import StatementLine
from ledger.core.unlicensed import UnlicensedUse
from ledger.core.usage import RevenueReport

EventKey = tuple[str, str]
"""(platform_id, event_id): what identifies an event across the ledger."""


class StatementLineRange(Protocol):
    """The statement lines of consecutive (holder, currency) keys, whole statements only; picklable."""

    last_key: tuple[str, str]
    """The greatest (holder, currency) of the range."""

    def groups(self) -> Iterator[tuple[tuple[str, str], list[StatementLine]]]:
        """The range's keys and their lines, in increasing (holder, currency)."""


class LedgerStore(Protocol):
    """An open ledger. Reads return rows of :mod:`ledger.core.records`, in a stated order."""

    @property
    def path(self) -> Path:
        """Where the ledger lives, for messages."""

    @property
    def last_entry_id(self) -> int:
        """The id of the last entry (0 when there is none)."""

    @property
    def gap_free(self) -> bool:
        """Whether row numbers run without gaps (a file); a lake's writers may leave some unused."""

    def closing(self) -> ContextManager[None]:
        """Held around a whole close: no other process appends or closes meanwhile (nothing to hold on one file)."""

    def reader(self) -> "LedgerStore":
        """A read view for another thread of this process; the writer keeps the file."""

    def limit_memory(self, limit: str) -> str:
        """Caps the memory the storage engine of this process keeps for the ledger (``"256MB"``);
        returns the limit it replaced, which restores it when set again."""

    def limit_threads(self, threads: int) -> int:
        """Sets how many threads the storage engine of this process runs the ledger's statements on;
        returns the count it replaced."""

    def limit_wal(self, wal_bytes: int) -> int:
        """Sets how many bytes of write-ahead log the storage holds before a commit checkpoints it;
        returns the size it replaced (0 where the storage keeps no log of its own: nothing set)."""

    def wal_bytes(self) -> int:
        """Bytes in the storage's write-ahead log now (0 where it keeps none); any thread may ask."""

    def memory_in_use(self) -> int:
        """Bytes the storage engine holds for this ledger in this process now (its buffer pool: blocks,
        a transaction's rows, indexes; 0 where it keeps no log to checkpoint). Called by the one writer."""

    def out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` is the storage engine refusing work for want of memory under its limit: what
        a higher limit may let through, as opposed to a fault of the data or of the statement."""

    def engine_memory_limit(self) -> str:
        """The memory limit the storage engine gives itself where none is set (a share of the machine's
        memory), in a form :meth:`limit_memory` accepts."""

    def checkpoint(self, *, vacuum: bool = True) -> None:
        """Writes everything committed into the storage's files and empties its write-ahead log
        (nothing where it keeps none). Called by the one writer, between its transactions. With
        ``vacuum`` off it only writes the new rows, leaving the merge of small pieces earlier
        checkpoints left to a later one with ``vacuum`` on (a shorter stall, the same data)."""

    # -- licenses --------------------------------------------------------------------------

    def load_book(self, *, keep: bool = True) -> LicenseBook:
        """Every license document applied so far, merged in the order applied; made once a process
        (``keep`` False: a book not made before is made and not kept)."""

    def apply_licenses(self, body: str, origin: str) -> tuple[LicenseBook, int]:
        """Stores a license document; returns the merged book and how many versions it added.

        Re-applying a document adds nothing; one that changes a stored version is refused whole.
        """

    def book_hash(self) -> str:
        """The identity of the license book as applied so far (``chain.book_hash``)."""

    def license_documents(self) -> list[LicenseDocument]:
        """Every license document, in the order applied, with the offsets booked when it was."""

    def forms_with_documents(self) -> Iterator[FormOfDocument]:
        """Every stored parsed form with the document it names, by document hash then form version,
        streamed: one pair held at a time."""

    # -- ingestion -------------------------------------------------------------------------

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to read per (topic, partition), as committed with the ledger rows."""

    def known_events(self, keys: Sequence[EventKey]) -> dict[EventKey, str]:
        """Content hashes of the events among ``keys`` already booked."""

    def booked_entries(self, keys: Sequence[EventKey]) -> dict[EventKey, tuple[tuple[str, Accrual], ...]]:
        """The (entry key, accrual) pairs booked for each event among ``keys``, in line order."""

    def corrections_of(self, keys: Sequence[EventKey]) -> dict[EventKey, str]:
        """For each event among ``keys`` already corrected, the event id of its correction."""

    def append_batch(self, batch: IngestBatch) -> BatchResult:
        """Appends a batch and its offsets in one transaction; all of it or none."""

    # -- quarantine ------------------------------------------------------------------------

    def open_quarantine(self, ids: Sequence[int] | None = None) -> list[QuarantinedRecord]:
        """Quarantined records not booked since (all, or those of ``ids``), oldest first."""

    def open_quarantine_count(self, error_code: str) -> int:
        """How many open quarantined records failed with the error of ``error_code``."""

    # -- the monthly close -----------------------------------------------------------------

    def latest_close(self, before: str | None = None) -> CloseRecord | None:
        """The latest close (of a period before ``before``, when given)."""

    def get_close(self, period: str) -> CloseRecord | None:
        """The close of ``period``, if it is closed."""

    def closes(self) -> list[CloseRecord]:
        """Every close, oldest period first."""

    def open_periods_through(self, period: str, after: str | None) -> list[str]:
        """Periods up to ``period`` (and after ``after``) that have entries, in order."""

    def statement_line_groups(self, period: str, watermark: int, previous_watermark: int
                              ) -> Iterator[tuple[tuple[str, str], list[StatementLine]]]:
        """The statement lines a close of ``period`` at ``watermark`` covers, entries summed, grouped per
        (holder, currency), in increasing (holder, currency), streamed: one statement's line objects held at a
        time.

        Covered: entries of ``period`` up to the watermark, and entries of earlier periods
        that arrived after the previous close's watermark (prior-period adjustments).
        """

    def statement_line_ranges(self, period: str, watermark: int, previous_watermark: int
                              ) -> Iterator["StatementLineRange"]:
        """The lines of :meth:`statement_line_groups` as consecutive ranges of whole statements (a few
        thousand lines each), in increasing (holder, currency): values a worker process can take."""

    def carry_ins(self, before: str) -> dict[tuple[str, str], Decimal]:
        """Each (holder, currency)'s carry out of its latest statement before ``before``."""

    def usage_totals(self, periods: Sequence[str], watermark: int,
                     sources: Collection[str] | None = None) -> list[UsageTotal]:
        """Per-event entries (training, inference) of ``periods`` up to ``watermark``, summed; of ``sources``
        only, when given."""

    def model_training(self, through: str, watermark: int) -> list[ModelTraining]:
        """Training units per platform, model, source and month up to ``through``."""

    def model_lineage(self) -> dict[tuple[str, str], str]:
        """The base model of each fine-tuned (platform, model): the first one declared."""

    def unsettled_revenue(self, through: str) -> list[RevenueReport]:
        """Revenue reports for months up to ``through`` that no close has settled yet."""

    def plan_entries(self, lines: Sequence[PeriodLine], period: str) -> PlannedEntries:
        """The period lines of closing ``period`` keyed in its stream, with digests and row numbers; nothing is written."""

    def stream_heads(self, before: str) -> dict[str, StreamHead]:
        """Every stream's head as of the latest close before ``before``."""

    def covered_heads(self, period: str, watermark: int, previous_watermark: int,
                      start: Mapping[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
        """Each touched stream's (entry count, head) after folding the digests of every entry a close covers (as
        :meth:`statement_line_groups`) onto ``start``, as ``chain.fold_streams`` does: digests computed from the entries'
        stored fields, in (stream, position, line) order."""

    def close_cutoff(self, period: str) -> dict[tuple[str, int], int]:
        """The next offset per (topic, partition) a close booked up to (empty for a close before schema 7)."""

    def close_streams(self, period: str) -> dict[str, StreamHead]:
        """The heads of the streams a close folded entries into (empty for a close before schema 7)."""

    def record_close(self, close: CloseRecord, statements: Iterable[SignedStatement], *,
                     planned: PlannedEntries | None = None, settled_revenue: Sequence[EventKey] = (),
                     commitment: CloseCommitment | None = None,
                     distributions: Sequence[ClosedDistribution] = ()) -> None:
        """Stores a close, its planned entries, settled revenue, commitment, statements and collectives'
        distributions with their members' statements in one transaction.

        ``statements`` may be a generator, consumed (a chunk at a time) inside the transaction;
        the close is stored with the number that came. ``distributions`` is read after it.
        """

    # -- collectives -----------------------------------------------------------------------

    def collective_portions(self, holder_id: str, period: str, watermark: int, previous_watermark: int,
                            boundaries: Sequence[datetime]) -> list[CollectivePortion]:
        """A collective's covered accruals per statement line and rule window (cut at ``boundaries``)."""

    def member_carry_ins(self, before: str) -> dict[tuple[str, str, str], Decimal]:
        """Each (collective, member, currency)'s carry out of its latest member statement before ``before``."""

    def held_undistributed(self, collective_id: str, currency: str, before: str) -> list[HeldUndistributed]:
        """The undistributed income of each earlier period of a collective in ``currency``."""

    def collective_distributions(self) -> list[DistributionRecord]:
        """Every stored distribution of a collective's period and currency."""

    def member_statement(self, statement_id: str) -> MemberStatementRecord | None:
        """One stored member distribution statement; None if there is none."""

    def member_statements(self, *, period: str | None = None, collective_id: str | None = None,
                          member_id: str | None = None) -> list[MemberStatementRecord]:
        """Stored member distribution statements, filtered by what is given."""

    # -- unlicensed use ----------------------------------------------------------------------

    def unlicensed_uses(self, period: str | None = None, *, platform_id: str | None = None,
                        holder_id: str | None = None) -> list[UnlicensedUse]:
        """Booked unlicensed uses (of one month, platform or holder), by month then log order."""

    def unlicensed_for_close(self, period: str) -> list[UnlicensedUse]:
        """The unlicensed uses the close of ``period`` lists: its month's and earlier months' not listed by an earlier close."""

    def training_uses(self, platform_id: str, as_of: datetime | None = None) -> list[TrainingUse]:
        """Priced training of each model of ``platform_id`` up to ``as_of``, per source and license version."""

    def model_platforms(self, model_id: str) -> list[str]:
        """The platforms that reported usage of a model named ``model_id`` (or named it as a base), sorted."""

    # -- statements ------------------------------------------------------------------------

    def statement_rows(self, period: str | None = None, holder_id: str | None = None) -> list[StatementRow]:
        """Stored statements' totals, by period, holder and currency."""

    def stored_statements(self, period: str) -> list[StatementRecord]:
        """The statements of ``period`` whole, by holder and currency."""

    def each_stored_statement(self, period: str) -> Iterator[StatementRecord]:
        """The statements of ``period`` whole, in no stated order, streamed: a bounded number held at a time."""

    def statement_count(self) -> int:
        """How many statements are stored."""

    def statement_document(self, statement_id: str) -> StatementDocument | None:
        """A statement's stored document; None if there is no such statement."""

    def statement_signature(self, statement_id: str) -> StatementSignature | None:
        """A statement's signature; None for a missing one or one closed before signing."""

    def unpublished_statements(self) -> list[StatementRecord]:
        """Signed statements whose StatementClosed event is not recorded as published, oldest first."""

    def record_publications(self, published: Sequence[Publication], at: datetime) -> None:
        """Records StatementClosed events as acknowledged by the broker."""

    # -- the open month --------------------------------------------------------------------

    def open_accruals(self, holder_id: str | None = None) -> OpenAccruals:
        """Accruals booked in months after the last close, per source, with the cut they were read at (one read)."""

    # -- API tokens ------------------------------------------------------------------------

    def record_token(self, *, token_id: str, secret_sha256: str, role: str, holder_id: str | None, label: str,
                     created_at: datetime, expires_at: datetime | None, platform_id: str | None = None) -> None:
        """Stores a token's hash (never its secret), its expiry and a platform token's platform, in one transaction."""

    def record_token_change(self, token_id: str, change: str, effective_at: datetime, recorded_at: datetime) -> None:
        """Appends a change ('revoked', 'expires') to a token."""

    def token_rows(self, token_id: str | None = None) -> list[TokenRow]:
        """Every token (or the one of ``token_id``), by creation."""

    # -- verification and monitoring -------------------------------------------------------

    def entry_scan(self) -> EntryScan:
        """Every entry's row number and stored digest (if any) checked in one column-wise pass, its memory
        bounded whatever the number of entries: the first row number out of sequence, the lowest-numbered
        entry whose stored digest its fields no longer give."""

    def legacy_entries(self) -> Iterator[ChainEntry]:
        """Every entry booked before schema 7 (format 2), in entry order, read in chunks."""

    def covered_totals(self, period: str, watermark: int, previous_watermark: int) -> dict[tuple[str, str], Decimal]:
        """The amount of the statement lines a close of ``period`` at ``watermark`` covers (as
        :meth:`statement_line_groups`), summed per (holder, currency), in increasing (holder, currency)."""

    def chain_anchors(self) -> list[ChainAnchor]:
        """The records of the chain's end kept apart from the entries: the last batch, the anchor file."""

    def totals(self) -> LedgerTotals:
        """Accrued amounts per currency and the time of the last close."""


@contextmanager
def memory_limited(ledger: LedgerStore, limit: str | None) -> Iterator[None]:
    """``ledger``'s memory limit set to ``limit`` (None: left as it is) for the block, the limit before
    restored after, whatever the block raised (a close caps it, the consumer's checkpoints raise it)."""
    if limit is None:
        yield
        return
    replaced = ledger.limit_memory(limit)
    try:
        yield
    finally:
        ledger.limit_memory(replaced)
