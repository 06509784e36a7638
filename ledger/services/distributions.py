"""Collectives at close, and their members' distribution statement files.

The close (:mod:`ledger.services.close`) builds a collective's statement as any
holder's; then, for a holder with members, it asks :func:`distribute_collective` for
the split, adds it to the statement document as the optional ``distribution`` section
and signs that document; :func:`sign_member_statements` then settles and signs each
member's statement, which names the collective statement by its content hash. A book
without collectives takes none of these paths: its statements are byte for byte what
they were.

Guarantees: the same ledger gives the same distributions, statements and signatures
(everything is a function of the covered entries, the book and the previous carries);
the member statements are stored in the close's own transaction.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from ledger.core.collectives import (
    AccrualPortion, Distribution, distribute, distribution_section, idle_member, member_document, member_statement,
    render_member_csv,
)
from ledger.core.envelope import render_envelope
from ledger.core.licenses import Holder, LicenseBook
from ledger.core.period_terms import PeriodLine
from ledger.core.periods import last_instant
from ledger.core.port import LedgerStore
from ledger.core.records import ClosedDistribution, SignedMemberStatement
from ledger.core.signing import Signer
from ledger.core.statements import Statement, StatementLine, canonical_bytes, render_document
from ledger.errors import LedgerFileError


def collective_portions(ledger: LedgerStore, book: LicenseBook, period: str, watermark: int, previous_watermark: int,
                        planned: tuple[PeriodLine, ...]) -> dict[tuple[str, str], list[AccrualPortion]]:
    """Every collective's covered accruals and this close's period lines, by (collective, currency), cut at rule changes."""
    portions: dict[tuple[str, str], list[AccrualPortion]] = {}
    for holder_id, holder in sorted(book.holders.items()):
        if not holder.members:
            continue
        boundaries = [rule.effective_from for rule in book.distribution_rules(holder_id)]
        for found in ledger.collective_portions(holder_id, period, watermark, previous_watermark, boundaries):
            portions.setdefault((holder_id, found.currency), []).append(found.portion)
        for line in planned:
            if line.holder_id == holder_id:
                portions.setdefault((holder_id, line.currency), []).append(AccrualPortion(at=line.occurred_at, line=StatementLine(
                    period=line.period, source_id=line.source_id, platform_id=line.platform_id,
                    model_id=line.model_id, kind=line.kind, unit=line.unit, quantity=line.quantity, rate=line.rate,
                    per=line.per, amount=line.amount, entries=1, license_id=line.license_id,
                    license_version=line.license_version, description=line.description)))
    return portions


def distribute_collective(ledger: LedgerStore, book: LicenseBook, holder: Holder, statement: Statement,
                          portions: list[AccrualPortion]) -> tuple[Distribution, dict]:
    """The split of a collective's ``statement`` and the ``distribution`` section of its document.

    Raises:
        LedgerFileError: the portions do not sum to the statement's accrued amount (they
            cover the same entries; a difference means the ledger is inconsistent).
    """
    period, currency = statement.period, statement.currency
    distribution = distribute(collective_id=holder.holder_id, members=holder.members,
                              rules=book.distribution_rules(holder.holder_id), period=period, currency=currency,
                              portions=portions, period_last_instant=last_instant(period))
    if distribution.accrued != statement.accrued:
        raise LedgerFileError(f"collective {holder.holder_id} {period} {currency}: its entries by rule window sum to"
                              f" {distribution.accrued}, its statement accrues {statement.accrued}")
    return distribution, distribution_section(distribution, ledger.held_undistributed(holder.holder_id, currency, period))


def sign_member_statements(*, distribution: Distribution, holder: Holder, collective_statement_id: str,
                           collective_content_hash: str, carry: dict[tuple[str, str, str], Decimal], close_root: str,
                           signer: Signer) -> ClosedDistribution:
    """Each member's statement of ``distribution``: attributed ones, and idle ones that carry a balance."""
    shares = {m.member_id: m for m in distribution.members}
    for member_id, member in holder.members.items():
        if member_id not in shares and carry.get((holder.holder_id, member_id, distribution.currency), 0) != 0:
            shares[member_id] = idle_member(member)
    signed = []
    for member_id, share in sorted(shares.items()):
        statement = member_statement(
            distribution=distribution, member=share, collective_name=holder.name,
            collective_statement_id=collective_statement_id, collective_content_hash=collective_content_hash,
            carry_in=carry.get((holder.holder_id, member_id, distribution.currency), Decimal(0)),
            payout_minimum=holder.members[member_id].payout_minimum.get(distribution.currency, Decimal(0)),
            close_root=close_root)
        document = member_document(statement)
        canonical = canonical_bytes(document)
        signed.append(SignedMemberStatement(statement=statement, content_hash=hashlib.sha256(canonical).hexdigest(),
                                            document=render_document(document), signature=signer.sign(canonical),
                                            key_fingerprint=signer.fingerprint))
    return ClosedDistribution(distribution=distribution, collective_statement_id=collective_statement_id,
                              members=tuple(signed))


def distribution_problems(ledger: LedgerStore) -> list[str]:
    """What does not reconcile in the collectives' distributions (``learnright verify``).

    For each distribution: members' nets + fee + deductions + undistributed == the
    collective statement's accrued amount. For each member statement: its document hashes
    to its stored content hash and states its stored totals; payable + carry out == net +
    carry in; its carry in is the carry out of the member's previous statement in that
    currency; it names its collective statement's content hash.
    """
    problems = []
    members = ledger.member_statements()
    nets: dict[tuple[str, str, str], Decimal] = {}
    for m in members:
        key = (m.period, m.collective_id, m.currency)
        nets[key] = nets.get(key, Decimal(0)) + m.net
    for d in ledger.collective_distributions():
        found = ledger.statement_document(d.statement_id)
        accrued = Decimal(json.loads(found.document)["summary"]["accrued"]) if found else None
        total = nets.get((d.period, d.collective_id, d.currency), Decimal(0)) + d.management_fee + d.deductions \
            + d.undistributed
        if accrued != total:
            problems.append(f"distribution of {d.collective_id} {d.period} {d.currency}: members' nets, fee,"
                            f" deductions and undistributed sum to {total}, its statement accrues {accrued}")
    previous: dict[tuple[str, str, str], Decimal] = {}
    for m in members:  # ordered by period
        where = f"member statement {m.statement_id} ({m.period}, {m.member_id} of {m.collective_id}, {m.currency})"
        document = json.loads(m.document)
        if hashlib.sha256(canonical_bytes(document)).hexdigest() != m.content_hash:
            problems.append(f"{where}: its document does not hash to its stored content hash")
        summary = {name: Decimal(document["summary"][name]) for name in ("accrued", "carry_in", "payable", "carry_out")}
        if summary != {"accrued": m.net, "carry_in": m.carry_in, "payable": m.payable, "carry_out": m.carry_out}:
            problems.append(f"{where}: its document's summary differs from its stored totals")
        if m.payable + m.carry_out != m.net + m.carry_in:
            problems.append(f"{where}: payable {m.payable} + carry out {m.carry_out} != net {m.net}"
                            f" + carry in {m.carry_in}")
        key = (m.collective_id, m.member_id, m.currency)
        if m.carry_in != previous.get(key, Decimal(0)):
            problems.append(f"{where}: carry in {m.carry_in} but the previous statement carried out"
                            f" {previous.get(key, Decimal(0))}")
        previous[key] = m.carry_out
        collective = ledger.statement_document(document["collective"]["statement_id"])
        if collective is None or collective.content_hash != document["collective"]["content_hash"]:
            problems.append(f"{where}: the collective statement it names is missing or has another content hash")
    return problems


def member_statement_file(ledger: LedgerStore, statement_id: str, fmt: str = "json") -> bytes | None:
    """A member's distribution statement as its signed JSON file, CSV or PDF; None if there is none."""
    found = ledger.member_statement(statement_id)
    if found is None:
        return None
    document = json.loads(found.document)
    if fmt == "csv":
        return render_member_csv(document)
    if fmt == "pdf":
        from ledger.core.pdf import render_pdf  # here: reportlab (~12 MB) is loaded by what renders a PDF

        return render_pdf(document, content_hash=found.content_hash, key_fingerprint=found.key_fingerprint,
                          signature=found.signature)
    return render_envelope(document, signature=found.signature, key_fingerprint=found.key_fingerprint)
