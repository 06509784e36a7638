"""`learnright verify`: recompute every hash and commitment, and reconcile statements to the ledger.

Finds, without trusting any stored hash:
  * an edited entry: the first whose content no longer gives its stored digest (entry
    format 3 booked before ledger schema 14, which stored it), or the first broken link of
    the format-2 chain of entries booked before ledger schema 7;
  * a missing row: a gap in the local row numbers, or fewer rows than the last batch or
    the anchor file beside the ledger (written after every commit, outside the DuckDB
    file) record;
  * an entry of a closed month changed, dropped, added or re-keyed (with or without a
    stored digest beside it): the stream whose recomputed head differs from what its close
    recorded, and the close whose recomputed root differs from its stored root or from the
    root its signed statements carry. Every entry's digest is computed from its stored
    fields (:mod:`ledger.storage.entry_digests`); from schema 14 none is stored, so an
    entry booked since is committed by its close alone: an edit to an entry of a month not
    closed yet has nothing to differ from until that month closes (a digest stored beside
    the row never committed it either: whoever edits the row can rewrite the digest);
  * a statement that no longer matches: its document hash, its totals against the
    accruals its close covered, or payable + carry out != accrued + carry in;
  * a collective's distribution that does not sum to its statement, or a member
    statement whose hash, totals or carry do not hold (:func:`distribution_problems`);
  * a license document whose stored parsed form, which reading the book decodes instead of
    its TOML (:mod:`ledger.core.license_forms`), is not what its text parses to.

At scale: entries are read column-wise by the storage (:meth:`LedgerStore.entry_scan`),
digests computed as a close computes them (natively when ``learnright_native`` is built);
statements and license forms are streamed. What it holds grows with the number of holders
(two amounts each) and the largest license document, not with entries or statements.

The report holds nothing local to one file when the ledger is sound (row numbers appear
only in problems), so two ledgers built from one log verify with the same output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from ledger.core import chain
from ledger.core.license_file import read_document
from ledger.core.license_forms import FORM_VERSION, document_form, document_of_form
from ledger.core.port import LedgerStore
from ledger.core.records import CloseRecord, StatementRecord
from ledger.core.statements import stored_document_hash
from ledger.services.close import previous_root
from ledger.errors import LicenseFileError
from ledger.services.distributions import distribution_problems


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    entries: int
    closes: int
    root: str
    """The last close's root (its chain head for a close before schema 7); "" before the first close."""
    statements: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(ledger: LedgerStore) -> VerifyReport:
    """Checks the whole ledger; returns every problem found (the first broken place first).

    Entries are checked column-wise by the storage (:meth:`LedgerStore.entry_scan`, digests
    computed as a close computes them), statements streamed a bounded number at a time: the
    memory it needs does not grow with the number of entries or statements.
    """
    problems: list[str] = []
    scan = ledger.entry_scan()
    # (row, rank, problem): the entries' first problems in the order a walk through the rows meets them
    found: list[tuple[int, int, str]] = []
    if ledger.gap_free and scan.first_jump is not None:
        found.append((scan.first_jump.entry_id, 0, f"entry rows jump from {scan.first_jump.previous} to"
                                                    f" {scan.first_jump.entry_id}: entries are missing"))
    elif not ledger.gap_free and scan.first_repeat is not None:  # a lake's numbers may skip (taken, not used), never repeat
        found.append((scan.first_repeat.entry_id, 0, f"entry row {scan.first_repeat.entry_id} comes again after row"
                                                     f" {scan.first_repeat.previous}: entries are duplicated"))
    changed = scan.first_changed  # booked before schema 14, with its digest stored
    if changed is not None:
        found.append((changed.entry_id, 1, f"first changed entry: entry {changed.key} (row {changed.entry_id}): stored"
                                           f" hash {changed.stored[:16]}... but its content hashes to"
                                           f" {changed.recomputed[:16]}..."))
    legacy_head = chain.GENESIS
    legacy_heads: dict[int, str] = {}
    broken_link = False
    for entry in ledger.legacy_entries():
        legacy_head = chain.link(legacy_head, chain.canonical_v2(entry.values))
        if not broken_link and legacy_head != entry.entry_hash:
            found.append((entry.entry_id, 1, f"first broken link at entry {entry.key} (row {entry.entry_id}): stored"
                                             f" hash {entry.entry_hash[:16]}... but its content hashes to"
                                             f" {legacy_head[:16]}...; the entry or one before it was changed"))
            broken_link = True
        legacy_heads[entry.entry_id] = legacy_head
    problems.extend(problem for _, _, problem in sorted(found))
    count, last_id = scan.entries, scan.last_entry_id

    def check_anchor(what: str, entry_id: int, stored_head: str) -> None:
        if entry_id > last_id:
            problems.append(f"{what} records row {entry_id} but the ledger ends at row {last_id}: its tail was truncated")
        elif stored_head and entry_id in legacy_heads and not broken_link and legacy_heads[entry_id] != stored_head:
            problems.append(f"{what} records chain head {stored_head[:16]}... at row {entry_id}, the ledger gives"
                            f" {legacy_heads[entry_id][:16]}...")

    for anchor in ledger.chain_anchors():
        check_anchor(anchor.where, anchor.last_entry_id, anchor.chain_head)
    closes = ledger.closes()
    roots = _check_commitments(ledger, closes, check_anchor, problems)
    problems.extend(_reconcile_statements(ledger, closes, roots))
    problems.extend(distribution_problems(ledger))  # collectives' members; nothing without collectives
    problems.extend(_form_problems(ledger))
    return VerifyReport(entries=count, closes=len(closes), root=roots[closes[-1].period] if closes else "",
                        statements=ledger.statement_count(), problems=tuple(problems))


def _form_problems(ledger: LedgerStore) -> list[str]:
    """Each stored parsed form against its document's text parsed again by ``tomllib``: a form that
    differs would give closes another book than the documents (and the book hash) say. One form and
    its document are held at a time.

    A form equal to what :func:`document_form` makes of the text is sound without being
    decoded: ``document_form`` returns only a form that decodes and encodes back to itself, so
    decoding it would give the same form again. Any other is decoded and compared as before,
    which names what is wrong.
    """
    problems = []
    for found in ledger.forms_with_documents():
        form, document = found.form, found.document
        if document is None:
            problems.append(f"a parsed license form names document {form.document_hash[:16]}..., which the ledger"
                            " does not hold")
            continue
        where = f"license document {document.origin} ({form.document_hash[:16]}...)"
        try:
            parsed, unparsable = document_form(read_document(document.body, document.origin)), None
        except LicenseFileError as exc:
            parsed, unparsable = None, exc
        if parsed is not None and parsed == form.parsed and form.form_version <= FORM_VERSION:
            continue  # the form its text gives, which decodes and encodes back to itself: nothing to decode
        try:
            stored = document_form(document_of_form(form.parsed, form.form_version, document.origin))
        except LicenseFileError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if unparsable is not None:
            problems.append(f"{where}: {unparsable}")
            continue
        if stored != parsed:
            problems.append(f"{where}: its stored parsed form (version {form.form_version}) is not what its text"
                            " parses to; the book is read from the form")
    return problems


def _check_commitments(ledger: LedgerStore, closes: list[CloseRecord], check_anchor, problems: list[str]
                       ) -> dict[str, str]:
    """Recomputes every close's stream heads and root from the stored entries; the root of each close."""
    heads: dict[str, tuple[int, str]] = {}
    roots: dict[str, str] = {}
    previous: CloseRecord | None = None
    for close in closes:
        if close.root is None:  # closed before schema 7: its commitment is the format-2 chain head
            check_anchor(f"close of {close.period}", close.last_entry_id, close.chain_head)
            roots[close.period] = close.chain_head
            previous = close
            continue
        touched = ledger.covered_heads(close.period, close.last_entry_id, previous.last_entry_id if previous else 0,
                                       heads)
        recorded = ledger.close_streams(close.period)
        for stream in sorted(set(touched) | set(recorded)):
            mine, theirs = touched.get(stream), recorded.get(stream)
            if theirs is None or mine is None or (theirs.entries, theirs.head) != mine:
                problems.append(
                    f"close of {close.period}: stream {stream} folds to {_head(mine)} but the close recorded"
                    f" {_head(None if theirs is None else (theirs.entries, theirs.head))}: an entry of {stream} it covers"
                    " was changed, added or dropped")
        heads.update(touched)
        prior = chain.GENESIS if previous is None else roots.get(previous.period, previous_root(previous))
        root = chain.close_root(period=close.period, previous_root=prior, book=close.book_hash or "",
                                cutoff=ledger.close_cutoff(close.period), heads=heads)
        if root != close.root:
            problems.append(f"close of {close.period}: its root recomputes to {root[:16]}... but {close.root[:16]}..."
                            " is stored")
        roots[close.period] = root
        previous = close
    return roots


def _head(value: tuple[int, str] | None) -> str:
    return "nothing" if value is None else f"{value[0]} entries, head {value[1][:16]}..."


def _reconcile_statements(ledger: LedgerStore, closes: list[CloseRecord], roots: dict[str, str]) -> list[str]:
    """Each close's statements against the amounts it covers, the carry before and its root.

    Statements are streamed in the order stored; their problems are reported by holder and
    currency. What is held per (holder, currency) is two amounts, never a document."""
    problems: list[str] = []
    previous_watermark = 0
    carried: dict[tuple[str, str], Decimal] = {}  # carry out of each (holder, currency)'s latest statement
    for close in closes:
        period, watermark = close.period, close.last_entry_id
        expected = ledger.covered_totals(period, watermark, previous_watermark)
        previous_watermark = watermark
        found: list[tuple[tuple[str, str], list[str]]] = []
        for stored in ledger.each_stored_statement(period):
            key = (stored.holder_id, stored.currency)
            document = _parsed(stored.document)
            mine = _statement_problems(stored, document, expected.pop(key, Decimal(0)), carried.get(key, Decimal(0)))
            if close.root is not None:
                mine.extend(_root_problems(stored, document, roots[period]))
            if mine:
                found.append((key, mine))
            carried[key] = stored.carry_out
        for _, mine in sorted(found, key=lambda item: item[0]):
            problems.extend(mine)
        for (holder, currency), amount in expected.items():
            problems.append(f"close of {period}: ledger entries of {holder} in {currency} ({amount}) have no statement")
    return problems


_UNREADABLE = object()
"""A statement document that is not JSON."""


def _parsed(document: str) -> object:
    try:
        return json.loads(document)
    except ValueError:
        return _UNREADABLE


def _root_problems(s: StatementRecord, document: object, root: str) -> list[str]:
    """A format-3 close's statement must carry the root its close recomputes to."""
    try:
        carried = document["ledger"]["close_root"]
    except (KeyError, TypeError):
        carried = None
    if carried == root:
        return []
    return [f"statement {s.statement_id} ({s.period}, {s.holder_id}, {s.currency}): it carries close root"
            f" {str(carried)[:16]}... but the ledger's entries give {root[:16]}..."]


def _statement_problems(s: StatementRecord, document: object, ledger_total: Decimal, previous_carry: Decimal
                        ) -> list[str]:
    """What is wrong with one stored statement, given what its close covers and what was carried into it."""
    problems: list[str] = []
    where = f"statement {s.statement_id} ({s.period}, {s.holder_id}, {s.currency})"
    if stored_document_hash(s.document) != s.content_hash:
        problems.append(f"{where}: its document no longer matches its content hash {s.content_hash[:16]}...")
    if s.accrued != ledger_total:
        problems.append(f"{where}: accrued {s.accrued} but the ledger entries it covers sum to {ledger_total}")
    if s.payable + s.carry_out != s.accrued + s.carry_in:
        problems.append(f"{where}: payable {s.payable} + carry out {s.carry_out} != accrued {s.accrued}"
                        f" + carry in {s.carry_in}")
    if s.carry_in != previous_carry:
        problems.append(f"{where}: carry in {s.carry_in} but the previous statement carried out {previous_carry}")
    summary = _document_summary(document)
    stored_summary = {"accrued": s.accrued, "carry_in": s.carry_in, "payable": s.payable, "carry_out": s.carry_out}
    for name, value in stored_summary.items():
        if summary.get(name) != value:
            problems.append(f"{where}: {name} {value} differs from its signed document ({summary.get(name)})")
    return problems


def _document_summary(document: object) -> dict[str, Decimal | None]:
    """The summary amounts a stored statement document (parsed) states (None where unreadable)."""
    try:
        summary = document["summary"]
        return {name: Decimal(str(summary[name])) for name in ("accrued", "carry_in", "payable", "carry_out")}
    except (ValueError, KeyError, TypeError, ArithmeticError):
        return {}
