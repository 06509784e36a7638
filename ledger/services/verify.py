"""`learnright verify`: recompute the hash chain and reconcile statements to the ledger.

Finds, without trusting any stored hash:
  * an edited, inserted, deleted or reordered accrual: the first entry whose recomputed
    hash differs from the stored one, or a gap in entry ids;
  * a truncated tail: fewer entries than the last batch, the last close or the anchor
    file beside the ledger (written after every commit, outside the DuckDB file) record;
  * a statement that no longer matches: its document hash, its totals against the
    accruals its close covered, or payable + carry out != accrued + carry in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from ledger.core import chain
from ledger.core.port import LedgerStore
from ledger.core.records import StatementRecord
from ledger.core.statements import stored_document_hash


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    entries: int
    chain_head: str
    statements: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(ledger: LedgerStore) -> VerifyReport:
    """Checks the whole ledger; returns every problem found (the first broken link first)."""
    problems: list[str] = []
    head, count, expected_id = chain.GENESIS, 0, 1
    heads: dict[int, str] = {}
    broken = False
    for entry in ledger.chain_entries():
        entry_id = entry.entry_id
        if not broken and entry_id != expected_id:
            problems.append(f"entry ids jump from {expected_id - 1} to {entry_id}: entries are missing")
            broken = True
        head = chain.link(head, chain.canonical(entry.values))
        if not broken and head != entry.entry_hash:
            problems.append(
                f"first broken link at entry {entry_id} ({entry.platform_id}/{entry.event_id} line {entry.line}):"
                f" stored hash {entry.entry_hash[:16]}... but its content hashes to {head[:16]}...;"
                " the entry or one before it was changed"
            )
            broken = True
        heads[entry_id] = head
        expected_id = entry_id + 1
        count += 1
    last_id = expected_id - 1

    def check_anchor(what: str, entry_id: int, stored_head: str) -> None:
        if entry_id > last_id:
            problems.append(f"{what} records entry {entry_id} but the ledger ends at entry {last_id}: its tail was truncated")
        elif entry_id > 0 and not broken and heads.get(entry_id) != stored_head:
            problems.append(f"{what} records chain head {stored_head[:16]}... at entry {entry_id}, the ledger gives {heads.get(entry_id, '')[:16]}...")

    for anchor in ledger.chain_anchors():
        check_anchor(anchor.where, anchor.last_entry_id, anchor.chain_head)
    problems.extend(_reconcile_statements(ledger, last_id, heads, check_anchor))
    return VerifyReport(entries=count, chain_head=head, statements=ledger.statement_count(), problems=tuple(problems))


def _reconcile_statements(ledger: LedgerStore, last_id: int, heads: dict[int, str], check_anchor) -> list[str]:
    problems: list[str] = []
    previous_watermark = 0
    carried: dict[tuple[str, str], Decimal] = {}  # carry out of each (holder, currency)'s latest statement
    for close in ledger.closes():
        period, watermark = close.period, close.last_entry_id
        check_anchor(f"close of {period}", watermark, close.chain_head)
        expected: dict[tuple[str, str], Decimal] = {}
        for covered in ledger.statement_lines(period, watermark, previous_watermark):
            key = (covered.holder_id, covered.currency)
            expected[key] = expected.get(key, Decimal(0)) + covered.line.amount
        previous_watermark = watermark
        for stored in ledger.stored_statements(period):
            key = (stored.holder_id, stored.currency)
            problems.extend(_statement_problems(stored, expected.pop(key, Decimal(0)), carried.get(key, Decimal(0))))
            carried[key] = stored.carry_out
        for (holder, currency), amount in expected.items():
            problems.append(f"close of {period}: ledger entries of {holder} in {currency} ({amount}) have no statement")
    return problems


def _statement_problems(s: StatementRecord, ledger_total: Decimal, previous_carry: Decimal) -> list[str]:
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
    summary = _document_summary(s.document)
    stored_summary = {"accrued": s.accrued, "carry_in": s.carry_in, "payable": s.payable, "carry_out": s.carry_out}
    for name, value in stored_summary.items():
        if summary.get(name) != value:
            problems.append(f"{where}: {name} {value} differs from its signed document ({summary.get(name)})")
    return problems


def _document_summary(document: str) -> dict[str, Decimal | None]:
    """The summary amounts a stored statement document states (None where unreadable)."""
    try:
        summary = json.loads(document)["summary"]
        return {name: Decimal(str(summary[name])) for name in ("accrued", "carry_in", "payable", "carry_out")}
    except (ValueError, KeyError, TypeError, ArithmeticError):
        return {}
