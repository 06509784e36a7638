"""The DuckDB ledger file: the adapter of the storage port (:class:`ledger.core.port.LedgerStore`).

:class:`Ledger` is the one object callers hold; each operation is carried out by the
repository of its aggregate (licenses, ingestion, quarantine, closes, period inputs,
statements, tokens, audit), which share one connection and one chain tip.

Guarantees:
  * One writer: DuckDB's file lock refuses a second writing process; the error says so.
  * Append-only: nothing here updates or deletes a row, and :meth:`Ledger.query` only reads.
  * A batch of events, its accruals, its quarantined records and its consumer offsets
    land in one transaction, so the ledger never holds rows without their offsets.
  * Accruals are hash-chained in entry order (see :mod:`ledger.core.chain`).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Collection, ContextManager, Iterable, Iterator, Mapping, Sequence

import duckdb

from ground.errors import ConfigError

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
from ledger.storage.audit import AuditRepository
from ledger.storage.closes import CloseRepository, LineRange
from ground.settings import LakeLocation
from ledger.storage.collectives import CollectiveRepository
from ledger.storage.connection import ChainTip, Db, connect
from ledger.storage.ingest import IngestRepository
from ledger.storage.lake import SESSION, LakeTip, open_lake
from ledger.storage.licenses import LicenseRepository
from ledger.storage.open_month import open_accruals
from ledger.storage.period_inputs import PeriodInputRepository
from ledger.storage.quarantine import QuarantineRepository
from ledger.storage.sql import SqlRefusedError, check_select
from ledger.storage.statements import StatementRepository
from ledger.storage.tokens import TokenRepository
from ledger.storage.provenance import ProvenanceRepository
from ledger.storage.unlicensed import UnlicensedRepository


_MEMORY_SIZE = re.compile(r"\s*\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)\s*")
"""What DuckDB's memory_limit accepts, and nothing that could end its SET statement."""

_UNITS = {"bytes": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
          "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def _bytes_of(size: str) -> int:
    """Bytes of a size as DuckDB shows a setting (``16.0 MiB``, ``256 bytes``)."""
    number, _, unit = size.strip().partition(" ")
    try:
        return round(float(number) * _UNITS[unit.strip() or "B"])
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"DuckDB shows a size Learnright cannot read: {size!r}") from exc


class Ledger:
    """An open ledger file. Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: "Path | LakeLocation", read_only: bool,
                 tip: "ChainTip | LakeTip | None" = None):
        self._db = Db(con, path)
        self.path = path
        self.read_only = read_only
        self._tip = tip if tip is not None else ChainTip(self._db)
        self._licenses = LicenseRepository(self._db)
        self._ingest = IngestRepository(self._db, self._tip)
        self._quarantine = QuarantineRepository(self._db)
        self._closes = CloseRepository(self._db, self._tip)
        self._period_inputs = PeriodInputRepository(self._db)
        self._statements = StatementRepository(self._db)
        self._tokens = TokenRepository(self._db)
        self._audit = AuditRepository(self._db)
        self._unlicensed = UnlicensedRepository(self._db)
        self._provenance = ProvenanceRepository(self._db)
        self._collectives = CollectiveRepository(self._db)
        self._memory_limit: str | None = None
        self._wal_limit: int | None = None

    @classmethod
    def open(cls, path: "str | Path | LakeLocation", *, read_only: bool = False) -> "Ledger":
        """Opens (creating, unless read-only) and migrates the ledger at ``path``: a file, or a lake.

        The one place the storage is chosen: a :class:`ground.settings.LakeLocation` opens a
        DuckLake ledger (:mod:`ledger.storage.lake`) with the same repositories and SQL,
        numbered and coordinated for several writers; a path opens the DuckDB file.

        Raises:
            LedgerLockedError: another process holds the file as writer.
            LedgerFileError: the file is missing (read-only), cannot be opened or needs migrating (read-only).
            LedgerVersionError: the file was written by a newer Learnright.
        """
        if isinstance(path, LakeLocation):
            con, tip = open_lake(path, read_only)
            ledger = cls(con, path, read_only, tip=tip)
            ledger._db.session = SESSION
            return ledger
        path = Path(path)
        return cls(connect(path, read_only), path, read_only)

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tip.close()
        self._db.con.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection of this ledger (storage code only; a test may swap it to inject a fault)."""
        return self._db.con

    @con.setter
    def con(self, con: duckdb.DuckDBPyConnection) -> None:
        self._db.con = con

    def reader(self) -> "Ledger":
        """A read view on its own DuckDB cursor, for another thread of this process.

        The file stays owned by this instance (its single writer); a DuckDB connection
        must not be shared between threads, a cursor per thread may.
        """
        cursor = self._db.cursor()
        reader = Ledger(cursor, self.path, read_only=True, tip=self._tip.for_reader(Db(cursor, self.path)))
        reader._db.session = self._db.session
        return reader

    def limit_memory(self, limit: str) -> str:
        """Sets DuckDB's memory limit (its buffer pool: cached blocks, indexes, a transaction's rows)
        for this ledger's database in this process; past it DuckDB evicts what it can and spills.

        Returns:
            The limit it replaced, for the caller to restore by setting it again: as last set
            through this method, else DuckDB's (its default, 80% of the machine's memory, as
            DuckDB writes it: ``18.8 GiB``). Not ``RESET memory_limit``, which this never runs:
            in DuckDB 1.5 it changes the setting shown but leaves the buffer pool at the limit set.

        Raises:
            ConfigError: ``limit`` is not a size such as ``256MB``, or DuckDB refuses it.
        """
        if not _MEMORY_SIZE.fullmatch(limit):
            raise ConfigError(f"a memory limit is a size such as '256MB' or '1GiB' (got {limit!r})")
        before = self._memory_limit or self._db.value("SELECT current_setting('memory_limit')")
        try:
            self._db.con.execute(f"SET memory_limit = '{limit.strip()}'")
        except duckdb.Error as exc:
            raise ConfigError(f"DuckDB refuses the memory limit {limit!r}: {exc}") from exc
        self._memory_limit = limit
        return before

    def limit_threads(self, threads: int) -> int:
        """Sets DuckDB's threads for this ledger's database in this process; returns the count it replaced.

        One thread runs each statement on the thread that issued it. DuckDB's Python client
        waits for its worker threads by polling them (taking the GIL and a lock each time), so
        on a machine of few cores a writer that leaves the other core to its own polling thread
        does the same work with less CPU (docs/benchmarks.md, the ingest profile).

        Raises:
            ConfigError: ``threads`` is below 1.
        """
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"DuckDB threads must be a whole number >= 1 (got {threads!r})")
        before = self._db.value("SELECT current_setting('threads')")
        self._db.con.execute(f"SET threads = {threads}")
        return int(before)

    def limit_wal(self, wal_bytes: int) -> int:
        """Sets how much write-ahead log this ledger's database in this process holds before a
        commit checkpoints it (DuckDB's ``checkpoint_threshold``, 16 MiB by default); returns the
        size it replaced, in bytes, which restores it when set again (as last set through this
        method, else DuckDB's, read from its setting).

        A commit that leaves more WAL than this runs DuckDB's checkpoint inside itself: it writes
        every table's rows since the last checkpoint into the file, compressed, and empties the
        WAL. So the WAL holds at most about this plus one transaction, and each checkpoint's work
        (and the stall of the commit that runs it) grows with it. A lake has no WAL of its own:
        nothing is set there and 0 is returned.

        Raises:
            ConfigError: ``wal_bytes`` is below 1.
        """
        if isinstance(wal_bytes, bool) or not isinstance(wal_bytes, int) or wal_bytes < 1:
            raise ConfigError(f"a WAL size is a whole number of bytes >= 1 (got {wal_bytes!r})")
        if not isinstance(self.path, Path):
            return 0
        before = self._wal_limit or _bytes_of(str(self._db.value("SELECT current_setting('checkpoint_threshold')")))
        self._db.con.execute(f"SET checkpoint_threshold = '{wal_bytes}B'")
        self._wal_limit = wal_bytes
        return before

    def wal_bytes(self) -> int:
        """Bytes in this ledger file's write-ahead log now (0 when there is none: just checkpointed, or a lake).

        Read from the file system, never from DuckDB, so that any thread may ask at any time.
        """
        if not isinstance(self.path, Path):
            return 0
        try:
            return self.path.with_name(self.path.name + ".wal").stat().st_size
        except FileNotFoundError:
            return 0

    def memory_in_use(self) -> int:
        """Bytes DuckDB's buffer pool holds for this database now (``duckdb_memory()`` summed); 0 for a lake."""
        if not isinstance(self.path, Path):
            return 0
        return int(self._db.value("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()"))

    def out_of_memory(self, error: BaseException) -> bool:
        """Whether ``error`` is DuckDB's ``Out of Memory Error`` (a block it could not allocate or pin
        under its memory limit); the transaction it broke was rolled back, the database is usable."""
        return isinstance(error, duckdb.OutOfMemoryException)

    def engine_memory_limit(self) -> str:
        """DuckDB's default memory limit on this machine (80% of its memory), as DuckDB writes it
        (``18.8 GiB``): read from a fresh in-memory database, since this one's may have been set."""
        with duckdb.connect(":memory:") as fresh:
            return str(fresh.execute("SELECT current_setting('memory_limit')").fetchone()[0])

    def checkpoint(self, *, vacuum: bool = True) -> None:
        """Writes everything committed into the ledger file and empties its WAL (DuckDB's ``CHECKPOINT``).

        Run by the one writer between its transactions; a lake has nothing to checkpoint here.

        Each checkpoint writes the rows committed since the last one as new row groups, and
        DuckDB's checkpoint also vacuums: it merges runs of small row groups that earlier
        checkpoints left into full ones, rewriting them. That merge, not the new rows, is what
        made some of a caught-up consumer's small checkpoints 3-8 times as long as the others
        (docs/benchmarks.md, "Latency"). With ``vacuum`` off this checkpoint merges nothing
        (DuckDB's ``max_vacuum_tasks`` is 0 for it, then set back): it costs about what its rows
        cost, and leaves its row groups for a later checkpoint with ``vacuum`` on to merge.
        What is stored, and what a query returns, is the same either way.
        """
        if not isinstance(self.path, Path):
            return
        if vacuum:
            self._db.con.execute("CHECKPOINT")
            return
        before = int(self._db.value("SELECT current_setting('max_vacuum_tasks')"))
        self._db.con.execute("SET max_vacuum_tasks = 0")
        try:
            self._db.con.execute("CHECKPOINT")
        finally:
            self._db.con.execute(f"SET max_vacuum_tasks = {before}")

    # -- ad-hoc reads (this adapter only; not part of the port) --------------------------

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """The rows of one read-only SELECT; anything else is refused before it runs.

        The ledger is append-only and written only through its methods. DuckDB's parser
        must type ``sql`` as exactly one SELECT, and its parse tree must hold no
        data-changing node (``WITH x AS (DELETE ... RETURNING 1) SELECT ...``).

        Raises:
            SqlRefusedError: ``sql`` is not exactly one read-only SELECT.
        """
        try:
            check_select(sql, self._db.con)
        except SqlRefusedError as exc:
            raise SqlRefusedError(f"Ledger.query only reads; {exc}") from exc
        return self._db.rows(sql, params)

    def scalar(self, sql: str, params: Sequence[object] = ()) -> object:
        """The single value of a read-only SELECT of one row and one column (see :meth:`query`)."""
        ((value,),) = self.query(sql, params)
        return value

    # -- chain ---------------------------------------------------------------------------

    @property
    def last_entry_id(self) -> int:
        return self._tip.committed_through(self._db)

    @property
    def gap_free(self) -> bool:
        return self._tip.gap_free

    def closing(self) -> ContextManager[None]:
        return self._tip.closing()

    # -- licenses ------------------------------------------------------------------------

    def load_book(self, *, keep: bool = True) -> LicenseBook:
        return self._licenses.load_book(keep=keep)

    def apply_licenses(self, body: str, origin: str) -> tuple[LicenseBook, int]:
        with self._tip.booking():  # in a lake, never in the middle of another writer's close
            return self._licenses.apply_licenses(body, origin)

    def book_hash(self) -> str:
        return self._licenses.book_hash()

    def license_documents(self) -> list[LicenseDocument]:
        return self._licenses.license_documents()

    def forms_with_documents(self) -> Iterator[FormOfDocument]:
        return self._licenses.forms_with_documents()

    # -- ingestion -----------------------------------------------------------------------

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        return self._ingest.stored_offsets()

    def known_events(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self._ingest.known_events(keys)

    def booked_entries(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[tuple[str, Accrual], ...]]:
        return self._ingest.booked_entries(keys)

    def corrections_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self._ingest.corrections_of(keys)

    def append_batch(self, batch: IngestBatch) -> BatchResult:
        return self._ingest.append_batch(batch)

    # -- quarantine ----------------------------------------------------------------------

    def open_quarantine(self, ids: Sequence[int] | None = None) -> list[QuarantinedRecord]:
        return self._quarantine.open_quarantine(ids)

    def open_quarantine_count(self, error_code: str) -> int:
        return self._quarantine.open_quarantine_count(error_code)

    # -- the monthly close ---------------------------------------------------------------

    def latest_close(self, before: str | None = None) -> CloseRecord | None:
        return self._closes.latest_close(before)

    def get_close(self, period: str) -> CloseRecord | None:
        return self._closes.get_close(period)

    def closes(self) -> list[CloseRecord]:
        return self._closes.closes()

    def open_periods_through(self, period: str, after: str | None) -> list[str]:
        return self._closes.open_periods_through(period, after)

    def statement_line_groups(self, period: str, watermark: int, previous_watermark: int
                              ) -> Iterator[tuple[tuple[str, str], list[StatementLine]]]:
        return self._closes.statement_line_groups(period, watermark, previous_watermark)

    def statement_line_ranges(self, period: str, watermark: int, previous_watermark: int) -> Iterator[LineRange]:
        return self._closes.statement_line_ranges(period, watermark, previous_watermark)

    def carry_ins(self, before: str) -> dict[tuple[str, str], Decimal]:
        return self._closes.carry_ins(before)

    def plan_entries(self, lines: Sequence[PeriodLine], period: str) -> PlannedEntries:
        return self._closes.plan_entries(lines, period)

    def stream_heads(self, before: str) -> dict[str, StreamHead]:
        return self._closes.stream_heads(before)

    def covered_heads(self, period: str, watermark: int, previous_watermark: int,
                      start: Mapping[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
        return self._closes.covered_heads(period, watermark, previous_watermark, start)

    def close_cutoff(self, period: str) -> dict[tuple[str, int], int]:
        return self._closes.close_cutoff(period)

    def close_streams(self, period: str) -> dict[str, StreamHead]:
        return self._closes.close_streams(period)

    def record_close(self, close: CloseRecord, statements: Iterable[SignedStatement], *,
                     planned: PlannedEntries | None = None, settled_revenue: Sequence[tuple[str, str]] = (),
                     commitment: CloseCommitment | None = None,
                     distributions: Sequence[ClosedDistribution] = ()) -> None:
        self._closes.record_close(close, statements, planned=planned, settled_revenue=settled_revenue,
                                  commitment=commitment, distributions=distributions)

    # -- collectives (see ledger.storage.collectives) ---------------------------------------

    def collective_portions(self, holder_id: str, period: str, watermark: int, previous_watermark: int,
                            boundaries: Sequence[datetime]) -> list[CollectivePortion]:
        return self._collectives.collective_portions(holder_id, period, watermark, previous_watermark, boundaries)

    def member_carry_ins(self, before: str) -> dict[tuple[str, str, str], Decimal]:
        return self._collectives.member_carry_ins(before)

    def held_undistributed(self, collective_id: str, currency: str, before: str) -> list[HeldUndistributed]:
        return self._collectives.held_undistributed(collective_id, currency, before)

    def collective_distributions(self) -> list[DistributionRecord]:
        return self._collectives.collective_distributions()

    def member_statement(self, statement_id: str) -> MemberStatementRecord | None:
        return self._collectives.member_statement(statement_id)

    def member_statements(self, *, period: str | None = None, collective_id: str | None = None,
                          member_id: str | None = None) -> list[MemberStatementRecord]:
        return self._collectives.member_statements(period=period, collective_id=collective_id, member_id=member_id)

    def usage_totals(self, periods: Sequence[str], watermark: int,
                     sources: Collection[str] | None = None) -> list[UsageTotal]:
        return self._period_inputs.usage_totals(periods, watermark, sources)

    def model_training(self, through: str, watermark: int) -> list[ModelTraining]:
        return self._period_inputs.model_training(through, watermark)

    def model_lineage(self) -> dict[tuple[str, str], str]:
        return self._period_inputs.model_lineage()

    def unsettled_revenue(self, through: str) -> list[RevenueReport]:
        return self._period_inputs.unsettled_revenue(through)

    # -- unlicensed use ------------------------------------------------------------------

    def unlicensed_uses(self, period: str | None = None, *, platform_id: str | None = None,
                        holder_id: str | None = None) -> list[UnlicensedUse]:
        return self._unlicensed.unlicensed_uses(period, platform_id=platform_id, holder_id=holder_id)

    def unlicensed_for_close(self, period: str) -> list[UnlicensedUse]:
        return self._unlicensed.unlicensed_for_close(period)

    def training_uses(self, platform_id: str, as_of: datetime | None = None) -> list[TrainingUse]:
        return self._provenance.training_uses(platform_id, as_of)

    def model_platforms(self, model_id: str) -> list[str]:
        return self._provenance.model_platforms(model_id)

    # -- statements ----------------------------------------------------------------------

    def statement_rows(self, period: str | None = None, holder_id: str | None = None) -> list[StatementRow]:
        return self._statements.statement_rows(period, holder_id)

    def stored_statements(self, period: str) -> list[StatementRecord]:
        return self._statements.stored_statements(period)

    def each_stored_statement(self, period: str) -> Iterator[StatementRecord]:
        return self._statements.each_stored_statement(period)

    def statement_count(self) -> int:
        return self._statements.statement_count()

    def statement_document(self, statement_id: str) -> StatementDocument | None:
        return self._statements.statement_document(statement_id)

    def statement_signature(self, statement_id: str) -> StatementSignature | None:
        return self._statements.statement_signature(statement_id)

    def unpublished_statements(self) -> list[StatementRecord]:
        return self._statements.unpublished_statements()

    def record_publications(self, published: Sequence[Publication], at: datetime) -> None:
        self._statements.record_publications(published, at)

    # -- the open month ------------------------------------------------------------------

    def open_accruals(self, holder_id: str | None = None) -> OpenAccruals:
        return open_accruals(self._db, holder_id)

    # -- API tokens ----------------------------------------------------------------------

    def record_token(self, *, token_id: str, secret_sha256: str, role: str, holder_id: str | None, label: str,
                     created_at: datetime, expires_at: datetime | None, platform_id: str | None = None) -> None:
        self._tokens.record_token(token_id=token_id, secret_sha256=secret_sha256, role=role, holder_id=holder_id,
                                  label=label, created_at=created_at, expires_at=expires_at, platform_id=platform_id)

    def record_token_change(self, token_id: str, change: str, effective_at: datetime, recorded_at: datetime) -> None:
        self._tokens.record_token_change(token_id, change, effective_at, recorded_at)

    def token_rows(self, token_id: str | None = None) -> list[TokenRow]:
        return self._tokens.token_rows(token_id)

    # -- verification and monitoring -----------------------------------------------------

    def entry_scan(self) -> EntryScan:
        return self._audit.entry_scan()

    def legacy_entries(self) -> Iterator[ChainEntry]:
        return self._audit.legacy_entries()

    def covered_totals(self, period: str, watermark: int, previous_watermark: int) -> dict[tuple[str, str], Decimal]:
        return self._audit.covered_totals(period, watermark, previous_watermark)

    def chain_anchors(self) -> list[ChainAnchor]:
        recorded = self._tip.recorded_anchor()
        return self._audit.chain_anchors() + ([recorded] if recorded is not None else [])

    def totals(self) -> LedgerTotals:
        return self._audit.totals()
