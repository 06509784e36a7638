"""Collectives in the ledger file: members, rule versions, distributions and member statements.

Append-only like every ledger table. Declarations are stored when a license document
is applied (for auditors' SQL; the book itself is always re-read from the documents);
distributions and the members' signed statements are stored by the close that made
them, in its transaction (:meth:`ledger.storage.closes.CloseRepository.record_close`).
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Sequence

import pyarrow as pa

from ledger.core.collectives import AccrualPortion, HeldUndistributed
from ledger.core.licenses import LicenseBook
from ledger.core.records import ClosedDistribution, CollectivePortion, DistributionRecord, MemberStatementRecord
from ledger.core.statements import StatementLine
from ledger.storage.arrow_rows import DECIMAL, TIMESTAMP
from ledger.storage.connection import Db
from ledger.storage.covered import COVERED

_MEMBER_COLUMNS = ("statement_id, period, collective_id, member_id, currency, net, carry_in, payable, carry_out,"
                   " content_hash, document, signature, key_fingerprint")


def record_declarations(db: Db, before: LicenseBook, after: LicenseBook, document_hash: str) -> None:
    """Stores the members and rule versions ``after`` adds to ``before`` (inside the caller's transaction)."""
    known_rules = {(r.collective_id, r.version) for r in before.distributions}
    for rule in after.distributions:
        if (rule.collective_id, rule.version) not in known_rules:
            db.con.execute("INSERT INTO distribution_rules VALUES (?, ?, ?, ?, ?, ?)",
                           [rule.collective_id, rule.version, rule.effective_from,
                            json.dumps(rule.terms, sort_keys=True), rule.content_hash, document_hash])
    stored = set(db.rows("SELECT collective_id, member_id FROM collective_members"))
    for holder in after.holders.values():
        for member in holder.members.values():
            if (holder.holder_id, member.member_id) not in stored:
                db.con.execute("INSERT INTO collective_members VALUES (?, ?, ?, ?, ?)", [
                    holder.holder_id, member.member_id, member.name,
                    json.dumps({c: str(a) for c, a in sorted(member.payout_minimum.items())}), document_hash])


def record_distributions(db: Db, closed: Sequence[ClosedDistribution], created_at: datetime) -> None:
    """Stores a close's distributions and member statements (inside the caller's transaction)."""
    for item in closed:
        d = item.distribution
        db.con.execute("INSERT INTO collective_distributions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            d.period, d.collective_id, d.currency, item.collective_statement_id, d.accrued, d.management_fee,
            d.fee_cap, sum((t.amount for t in d.deductions), Decimal(0)), d.undistributed,
            ",".join(map(str, d.rule_versions))])
    signed = [s for item in closed for s in item.members]
    if not signed:
        return
    def amounts(get) -> pa.Array:
        return pa.array([get(s) for s in signed], DECIMAL)
    db.insert("member_statements", pa.table({
        "statement_id": [s.statement.statement_id for s in signed],
        "period": [s.statement.period for s in signed],
        "collective_id": [s.statement.collective_id for s in signed],
        "member_id": [s.statement.member.member_id for s in signed],
        "currency": [s.statement.currency for s in signed],
        "format_version": pa.array([json.loads(s.document)["format_version"] for s in signed], pa.int32()),
        "attributed": amounts(lambda s: s.statement.member.attributed),
        "management_fee": amounts(lambda s: s.statement.member.management_fee),
        "deductions": amounts(lambda s: sum((t.amount for t in s.statement.member.deductions), Decimal(0))),
        "net": amounts(lambda s: s.statement.member.net),
        "carry_in": amounts(lambda s: s.statement.carry_in),
        "payable": amounts(lambda s: s.statement.payable),
        "carry_out": amounts(lambda s: s.statement.carry_out),
        "collective_statement_id": [s.statement.collective_statement_id for s in signed],
        "collective_content_hash": [s.statement.collective_content_hash for s in signed],
        "content_hash": [s.content_hash for s in signed],
        "document": [s.document.decode() for s in signed],
        "signature": [s.signature for s in signed],
        "key_fingerprint": [s.key_fingerprint for s in signed],
        "created_at": pa.array([created_at] * len(signed), TIMESTAMP),
    }))


class CollectiveRepository:
    """Reads for the close, the services and the shells."""

    def __init__(self, db: Db):
        self.db = db

    def collective_portions(self, holder_id: str, period: str, watermark: int, previous_watermark: int,
                            boundaries: Sequence[datetime]) -> list[CollectivePortion]:
        """The collective's covered accruals summed per statement line and rule window.

        A rule window is the time between two of ``boundaries`` (the rule versions'
        effective_from); each portion's ``at`` is its earliest entry's ``occurred_at``,
        which falls in its window, so the rule in force at ``at`` is the window's.
        """
        rows = self.db.rows(
            f"""
            SELECT currency, period, source_id, platform_id, model_id, kind, unit, rate, per, license_id,
                   license_version, description, len(list_filter(?::TIMESTAMPTZ[], lambda b: b <= occurred_at)) AS w,
                   sum(quantity), sum(amount), count(*), min(occurred_at)
            FROM accruals
            WHERE holder_id = ? AND {COVERED}
            GROUP BY ALL
            """,
            [list(boundaries), holder_id, watermark, period, period, previous_watermark],
        )
        return [
            CollectivePortion(currency=currency, portion=AccrualPortion(at=at, line=StatementLine(
                period=line_period, source_id=source_id, platform_id=platform_id, model_id=model_id, kind=kind,
                unit=unit, quantity=quantity, rate=rate, per=per, amount=amount, entries=entries,
                license_id=license_id, license_version=license_version, description=description or "")))
            for (currency, line_period, source_id, platform_id, model_id, kind, unit, rate, per, license_id,
                 license_version, description, _window, quantity, amount, entries, at) in rows
        ]

    def member_carry_ins(self, before: str) -> dict[tuple[str, str, str], Decimal]:
        """Each (collective, member, currency)'s carry out of its latest member statement before ``before``."""
        rows = self.db.rows("SELECT collective_id, member_id, currency, arg_max(carry_out, period)"
                            " FROM member_statements WHERE period < ? GROUP BY ALL", [before])
        return {(collective, member, currency): amount for collective, member, currency, amount in rows}

    def held_undistributed(self, collective_id: str, currency: str, before: str) -> list[HeldUndistributed]:
        """The undistributed income of each earlier period of the collective in ``currency``."""
        rows = self.db.rows("SELECT period, undistributed FROM collective_distributions"
                            " WHERE collective_id = ? AND currency = ? AND period < ? ORDER BY period",
                            [collective_id, currency, before])
        return [HeldUndistributed(period=period, amount=amount) for period, amount in rows]

    def collective_distributions(self) -> list[DistributionRecord]:
        """Every stored distribution, by period, collective and currency."""
        rows = self.db.rows("SELECT period, collective_id, currency, statement_id, accrued, management_fee, deductions,"
                            " undistributed FROM collective_distributions ORDER BY period, collective_id, currency")
        return [DistributionRecord(period=period, collective_id=collective_id, currency=currency,
                                   statement_id=statement_id, accrued=accrued, management_fee=fee,
                                   deductions=deductions, undistributed=undistributed)
                for period, collective_id, currency, statement_id, accrued, fee, deductions, undistributed in rows]

    def member_statement(self, statement_id: str) -> MemberStatementRecord | None:
        rows = self.db.rows(f"SELECT {_MEMBER_COLUMNS} FROM member_statements WHERE statement_id = ?", [statement_id])
        return _member(rows[0]) if rows else None

    def member_statements(self, *, period: str | None = None, collective_id: str | None = None,
                          member_id: str | None = None) -> list[MemberStatementRecord]:
        """Stored member statements, filtered by what is given; ordered by period, collective, member, currency."""
        where, params = [], []
        for column, value in (("period", period), ("collective_id", collective_id), ("member_id", member_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.rows(f"SELECT {_MEMBER_COLUMNS} FROM member_statements{clause}"
                            " ORDER BY period, collective_id, member_id, currency", params)
        return [_member(row) for row in rows]


def _member(row: tuple) -> MemberStatementRecord:
    (statement_id, period, collective_id, member_id, currency, net, carry_in, payable, carry_out, content_hash,
     document, signature, key_fingerprint) = row
    return MemberStatementRecord(statement_id=statement_id, period=period, collective_id=collective_id,
                                 member_id=member_id, currency=currency, net=net, carry_in=carry_in, payable=payable,
                                 carry_out=carry_out, content_hash=content_hash, document=document,
                                 signature=signature, key_fingerprint=key_fingerprint)
