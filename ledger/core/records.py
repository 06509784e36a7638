"""The values that cross the storage port: what goes into the ledger and what comes out.

Every read of the ledger returns one of these rows, never a positional tuple, so a
caller names the column it means and a new column breaks no caller. They are plain
frozen values: building or reading one needs no database, so batch building and the
services import them without DuckDB or Arrow (see :mod:`ledger.core.port`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Mapping

from ledger.core.collectives import AccrualPortion, Distribution, MemberStatement
from ledger.core.period_terms import PeriodLine
from ledger.core.pricing import Accrual
from ledger.core.statements import Statement, StatementLine
from ledger.core.unlicensed import UnlicensedUse
from ledger.core.usage import RevenueReport

# -- ingestion ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRow:
    """One accepted event, keyed by (platform_id, event_id), with where it was read."""

    platform_id: str
    event_id: str
    event_type: str
    content_hash: str
    model_id: str | None
    occurred_at: datetime
    period: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineRow:
    """A record that could not be booked, kept whole with the reason.

    ``error_code`` is the stable code of the error (:func:`ground.errors.error_code`): what
    replay and counts match on. ``error_class`` is kept beside it for the audit trail.
    ``record_timestamp`` is the Kafka record's timestamp (milliseconds since 1970, -1 for
    none): a replay bounds ``occurred_at`` by it, as ingestion did.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    error_code: str
    error_class: str
    reason: str
    platform_id: str | None = None
    event_id: str | None = None
    record_timestamp: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLineage:
    """A fine-tune's base model, as a TrainingUsage event declared it (``base_model_id``)."""

    platform_id: str
    model_id: str
    base_model_id: str
    event_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestBatch:
    """Everything one consumer batch appends, in one transaction with its offsets."""

    events: tuple[EventRow, ...] = ()
    accruals: tuple[Accrual, ...] = ()
    revenues: tuple[tuple[RevenueReport, int], ...] = ()
    quarantined: tuple[QuarantineRow, ...] = ()
    offsets: Mapping[tuple[str, int], int] = field(default_factory=dict)
    starts: Mapping[tuple[str, int], int] = field(default_factory=dict)
    """The offset each partition's records start at, when read from Kafka: a ledger of several
    writers refuses the batch if it has booked that partition past it (``StaleBatchError``)."""
    duplicates: int = 0
    lineage: tuple[ModelLineage, ...] = ()
    unlicensed: tuple[UnlicensedUse, ...] = ()
    """Uses of sources whose consent ended (:mod:`ledger.core.unlicensed`): booked, never priced."""
    native: object | None = None
    """Rows the native fast path built (``learnright_native.Rows``); appended before the rest."""

    @property
    def event_count(self) -> int:
        return len(self.events) + (self.native.event_count if self.native is not None else 0)

    @property
    def accrual_count(self) -> int:
        return len(self.accruals) + (self.native.accrual_count if self.native is not None else 0)

    def events_by_type(self) -> dict[str, int]:
        counts = dict(self.native.type_counts()) if self.native is not None else {}
        for event in self.events:
            counts[event.event_type] = counts.get(event.event_type, 0) + 1
        return counts


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """Where an appended batch landed: its local batch number and the rows it numbered."""

    batch_id: int
    first_entry_id: int
    last_entry_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantinedRecord:
    """A quarantined record still open: no event was accepted at its offset since."""

    quarantine_id: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    error_code: str
    """The stable code; rows stored before codes were stored get the code of their class."""
    error_class: str
    reason: str
    platform_id: str | None
    event_id: str | None
    quarantined_at: datetime
    record_timestamp: int
    """The Kafka record's timestamp (ms since 1970); rows stored before ledger schema 6 kept
    none and read their quarantine time, the nearest later bound of it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseDocument:
    """A license document as applied to a ledger, with where in the log it took effect."""

    document_hash: str
    origin: str
    body: str
    applied_at: datetime
    booked_offsets: dict[tuple[str, int], int] | None
    """The next offset per (topic, partition) the ledger had booked when it was applied;
    None for a document applied before ledger schema 7."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseDocumentForm:
    """The stored parsed form of a license document (ledger schema 13; :mod:`ledger.core.license_forms`)."""

    document_hash: str
    form_version: int
    parsed: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FormOfDocument:
    """A stored parsed form with the license document it names (None when the ledger does not hold it)."""

    form: LicenseDocumentForm
    document: LicenseDocument | None


# -- the monthly close ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedEntries:
    """Period lines a close will append, keyed in the close's stream, with their digests.

    ``lines`` carry their identity (stream ``close/<period>``, position = index);
    ``values`` are their ENTRY_FIELDS values in order (:mod:`ledger.core.chain`), exactly
    what their ``hashes`` cover (the close folds them; from schema 14 they are not stored).
    ``first_entry_id``..``last_entry_id`` are the local row numbers they get if appended now.
    """

    lines: tuple[PeriodLine, ...]
    values: tuple[tuple, ...]
    hashes: tuple[str, ...]
    first_entry_id: int
    last_entry_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseRecord:
    """A closed month: its time, what it covers and its commitment.

    ``last_entry_id`` is the local watermark (the last row of this file the close could
    cover). ``root`` is the close root (:func:`ledger.core.chain.close_root`) and
    ``book_hash`` the license book it used; both None for a close stored before ledger
    schema 7, whose commitment is ``chain_head``, the format-2 chain's head at the
    watermark ("" for a format-3 close).
    """

    period: str
    closed_at: datetime
    last_entry_id: int
    chain_head: str
    statements: int
    root: str | None = None
    book_hash: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamHead:
    """A stream's head after a close: how many entries it has committed, and the fold of their digests."""

    stream: str
    entries: int
    head: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseCommitment:
    """What a format-3 close commits to besides its statements: cut-off, stream heads, book, root."""

    cutoff: dict[tuple[str, int], int]
    heads: dict[str, StreamHead]
    """Every stream's head after the close, those the close did not touch included."""
    touched: tuple[str, ...]
    """The streams the close folded entries into."""
    book_hash: str
    root: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedStatement:
    """A statement as a close stores it: its rendered JSON, content hash and signature."""

    statement: Statement
    content_hash: str
    document: bytes
    signature: str
    key_fingerprint: str


# -- statements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementRow:
    """A stored statement's totals, without its document."""

    statement_id: str
    period: str
    holder_id: str
    currency: str
    accrued: Decimal
    carry_in: Decimal
    payable: Decimal
    carry_out: Decimal
    content_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementRecord:
    """A stored statement whole: totals, document, and signature (None before format 3)."""

    statement_id: str
    period: str
    holder_id: str
    currency: str
    accrued: Decimal
    carry_in: Decimal
    payable: Decimal
    carry_out: Decimal
    content_hash: str
    document: str
    created_at: datetime
    signature: str | None
    key_fingerprint: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementDocument:
    """A statement's stored JSON document and the content hash it was stored with."""

    document: str
    content_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementSignature:
    """A statement's Ed25519 signature and the fingerprint of the key that made it."""

    signature: str
    key_fingerprint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Publication:
    """A StatementClosed event the broker acknowledged: where it landed."""

    statement_id: str
    topic: str
    partition: int
    offset: int


# -- API tokens -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRow:
    """An API token as stored (the secret's hash, never the secret), with its latest state.

    ``expires_at`` is the latest recorded expiry; ``revoked_at`` the earliest revocation.
    """

    token_id: str
    secret_sha256: str
    role: str
    holder_id: str | None
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    platform_id: str | None = None
    """The platform of a ``platform`` token; None for the other scopes."""


# -- the open month -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAccrual:
    """Entries booked so far in a month no close has reached, summed per source, kind and unit.

    Provisional: what a close of ``period`` would later add (period terms, rounding, carry)
    is not in it, and nothing about it is signed.
    """

    period: str
    holder_id: str
    currency: str
    source_id: str
    kind: str
    unit: str
    quantity: Decimal
    amount: Decimal
    entries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAccruals:
    """The open months' accruals and the cut they were read at, all as of one read transaction.

    ``last_entry_id`` is the local row number of the last entry booked (0 for none);
    ``offsets`` the next offset per (topic, partition) booked with it; ``last_batch_at``
    when the last ingestion batch committed. ``after_period`` is the last closed month
    (None before the first close): every row's period comes after it.
    """

    rows: tuple[OpenAccrual, ...]
    after_period: str | None
    last_closed_at: datetime | None
    last_entry_id: int
    offsets: Mapping[tuple[str, int], int]
    last_batch_at: datetime | None


# -- verification and monitoring --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainEntry:
    """One ledger entry as stored: the values its hash covers and the hash stored with it.

    ``format`` 3 entries carry ENTRY_FIELDS values (:mod:`ledger.core.chain`) and their own
    digest if booked before ledger schema 14 (None since: it is computed from the values);
    ``format`` 2 ones (booked before ledger schema 7) ENTRY_FIELDS_V2 values and their link in
    the global chain. ``entry_id`` is the local row number.
    """

    entry_id: int
    format: int
    values: tuple
    entry_hash: str | None
    key: str
    """The entry's key (``stream@position#line``; ``entry:<id>`` for format 2), for reports."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RowBreak:
    """Where the row numbers of the entries, in increasing order, first do not follow on:
    row ``entry_id`` came after row ``previous`` (0 before the first row)."""

    previous: int
    entry_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangedEntry:
    """An entry (format 3) whose stored digest (booked before ledger schema 14) its fields no longer give."""

    entry_id: int
    key: str
    """``stream@position#line``, for reports."""
    stored: str
    recomputed: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryScan:
    """What one column-wise pass over every stored entry finds, for ``learnright verify``.

    ``first_jump`` is the first row not numbered one more than the row before (a row
    missing, or repeated); ``first_repeat`` the first numbered at or below the row before
    (a row repeated); both None on a sound ledger file. ``first_changed`` is the
    lowest-numbered entry whose stored digest differs from its fields' (None when none
    does, or no digest is stored).
    """

    entries: int
    last_entry_id: int
    """The highest row number (0 without entries)."""
    first_jump: RowBreak | None
    first_repeat: RowBreak | None
    first_changed: ChangedEntry | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainAnchor:
    """A record of the chain's end kept apart from the entries (a batch row, the anchor file)."""

    where: str
    """What recorded it, for a report: ``batch 12``, ``anchor file ledger.duckdb.anchor``."""
    last_entry_id: int
    chain_head: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CurrencyAmount:
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerTotals:
    """What the ledger holds, for monitoring: accrued amounts per currency and the last close."""

    accrued: tuple[CurrencyAmount, ...]
    last_closed_at: datetime | None


# -- collectives ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectivePortion:
    """A collective's accruals a close covers, summed per statement line and distribution rule window."""

    currency: str
    portion: AccrualPortion


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedMemberStatement:
    """A member's distribution statement as a close stores it: rendered JSON, content hash, signature."""

    statement: MemberStatement
    content_hash: str
    document: bytes
    signature: str
    key_fingerprint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedDistribution:
    """One collective's distribution of a period and currency, the statement it splits, and its members' statements."""

    distribution: Distribution
    collective_statement_id: str
    members: tuple[SignedMemberStatement, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributionRecord:
    """A stored distribution: one collective's split of one period and currency."""

    period: str
    collective_id: str
    currency: str
    statement_id: str
    accrued: Decimal
    management_fee: Decimal
    deductions: Decimal
    undistributed: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberStatementRecord:
    """A stored member distribution statement."""

    statement_id: str
    period: str
    collective_id: str
    member_id: str
    currency: str
    net: Decimal
    carry_in: Decimal
    payable: Decimal
    carry_out: Decimal
    content_hash: str
    document: str
    signature: str
    key_fingerprint: str
