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
from ledger.core.statements import stored_document_hash
from ledger.storage.store import Ledger, anchor_path

CHUNK = 50_000


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    entries: int
    chain_head: str
    statements: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(ledger: Ledger) -> VerifyReport:
    """Checks the whole ledger; returns every problem found (the first broken link first)."""
    problems: list[str] = []
    head, count, expected_id = chain.GENESIS, 0, 1
    heads: dict[int, str] = {}
    broken = False
    cursor = ledger.con.cursor()
    cursor.execute(f"SELECT {', '.join(chain.ENTRY_FIELDS)}, entry_hash FROM accruals ORDER BY entry_id")
    while rows := cursor.fetchmany(CHUNK):
        for row in rows:
            entry_id = row[0]
            if not broken and entry_id != expected_id:
                problems.append(f"entry ids jump from {expected_id - 1} to {entry_id}: entries are missing")
                broken = True
            head = chain.link(head, chain.canonical(row[:-1]))
            if not broken and head != row[-1]:
                problems.append(
                    f"first broken link at entry {entry_id} ({row[1]}/{row[2]} line {row[3]}): stored hash"
                    f" {row[-1][:16]}... but its content hashes to {head[:16]}...; the entry or one before it was changed"
                )
                broken = True
            heads[entry_id] = head
            expected_id = entry_id + 1
            count += 1
    cursor.close()
    last_id = expected_id - 1

    def check_anchor(what: str, entry_id: int, stored_head: str) -> None:
        if entry_id > last_id:
            problems.append(f"{what} records entry {entry_id} but the ledger ends at entry {last_id}: its tail was truncated")
        elif entry_id > 0 and not broken and heads.get(entry_id) != stored_head:
            problems.append(f"{what} records chain head {stored_head[:16]}... at entry {entry_id}, the ledger gives {heads.get(entry_id, '')[:16]}...")

    batches = ledger.query(
        "SELECT batch_id, chain_head, (SELECT max(entry_id) FROM accruals a WHERE a.batch_id <= b.batch_id)"
        " FROM ingest_batches b ORDER BY batch_id DESC LIMIT 1"
    )
    for batch_id, stored_head, entry_id in batches:
        if entry_id is None:
            continue
        check_anchor(f"batch {batch_id}", entry_id, stored_head)
    anchor = anchor_path(ledger.path)
    if anchor.exists():
        recorded = json.loads(anchor.read_text())
        check_anchor(f"anchor file {anchor.name}", recorded["last_entry_id"], recorded["chain_head"])
    problems.extend(_reconcile_statements(ledger, last_id, heads, check_anchor))
    statements = ledger.query("SELECT count(*) FROM statements")[0][0]
    return VerifyReport(entries=count, chain_head=head, statements=statements, problems=tuple(problems))


def _reconcile_statements(ledger: Ledger, last_id: int, heads: dict[int, str], check_anchor) -> list[str]:
    problems: list[str] = []
    closes = ledger.query("SELECT period, last_entry_id, chain_head FROM period_closes ORDER BY period")
    previous_watermark = 0
    carried: dict[tuple[str, str], Decimal] = {}  # carry out of each (holder, currency)'s latest statement
    for period, watermark, close_head in closes:
        check_anchor(f"close of {period}", watermark, close_head)
        expected: dict[tuple[str, str], Decimal] = {}
        for row in ledger.statement_lines(period, watermark, previous_watermark):
            key = (row[0], row[1])
            expected[key] = expected.get(key, Decimal(0)) + row[13]
        previous_watermark = watermark
        stored = ledger.query(
            "SELECT statement_id, holder_id, currency, accrued, carry_in, payable, carry_out, content_hash, document"
            " FROM statements WHERE period = ?", [period]
        )
        for sid, holder, currency, accrued, carry_in, payable, carry_out, digest, document in stored:
            where = f"statement {sid} ({period}, {holder}, {currency})"
            if stored_document_hash(document) != digest:
                problems.append(f"{where}: its document no longer matches its content hash {digest[:16]}...")
            ledger_total = expected.pop((holder, currency), Decimal(0))
            if accrued != ledger_total:
                problems.append(f"{where}: accrued {accrued} but the ledger entries it covers sum to {ledger_total}")
            if payable + carry_out != accrued + carry_in:
                problems.append(f"{where}: payable {payable} + carry out {carry_out} != accrued {accrued} + carry in {carry_in}")
            previous_carry = carried.get((holder, currency), Decimal(0))
            if carry_in != previous_carry:
                problems.append(f"{where}: carry in {carry_in} but the previous statement carried out {previous_carry}")
            carried[(holder, currency)] = carry_out
            summary = _document_summary(document)
            stored_summary = {"accrued": accrued, "carry_in": carry_in, "payable": payable, "carry_out": carry_out}
            for name, value in stored_summary.items():
                if summary.get(name) != value:
                    problems.append(f"{where}: {name} {value} differs from its signed document ({summary.get(name)})")
        for (holder, currency), amount in expected.items():
            problems.append(f"close of {period}: ledger entries of {holder} in {currency} ({amount}) have no statement")
    return problems


def _document_summary(document: str) -> dict[str, Decimal | None]:
    """The summary amounts a stored statement document states (None where unreadable)."""
    try:
        summary = json.loads(document)["summary"]
        return {name: Decimal(str(summary[name])) for name in ("accrued", "carry_in", "payable", "carry_out")}
    except (ValueError, KeyError, TypeError, ArithmeticError):
        return {}
