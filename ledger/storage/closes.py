"""Monthly closes in the ledger file: what a close reads, and the one transaction that stores it.

Guarantees:
  * A close, its period entries (appended to the hash chain as one batch), its settled
    revenue and its statements are stored in one transaction; on any error, nothing.
  * A closed period is never rewritten.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterable, Sequence

import pyarrow as pa

from ledger.core import chain
from ledger.core.period_terms import PeriodLine
from ledger.core.records import CloseRecord, HolderLine, PlannedEntries, SignedStatement
from ledger.core.statements import StatementLine
from ledger.errors import LedgerFileError
from ledger.storage.arrow_rows import accruals_table
from ledger.storage.connection import ChainTip, Db

_CLOSE_COLUMNS = "period, closed_at, last_entry_id, chain_head, statements"


def _close(row: tuple) -> CloseRecord:
    period, closed_at, last_entry_id, chain_head, statements = row
    return CloseRecord(period=period, closed_at=closed_at, last_entry_id=last_entry_id, chain_head=chain_head,
                       statements=statements)


class CloseRepository:
    """``period_closes`` and ``statements`` as a close writes them, and the accruals it sums."""

    def __init__(self, db: Db, tip: ChainTip):
        self.db = db
        self.tip = tip

    def latest_close(self, before: str | None = None) -> CloseRecord | None:
        """The latest close (of a period before ``before``, when given)."""
        rows = self.db.rows(
            f"SELECT {_CLOSE_COLUMNS} FROM period_closes WHERE (? IS NULL OR period < ?) ORDER BY period DESC LIMIT 1",
            [before, before],
        )
        return _close(rows[0]) if rows else None

    def get_close(self, period: str) -> CloseRecord | None:
        rows = self.db.rows(f"SELECT {_CLOSE_COLUMNS} FROM period_closes WHERE period = ?", [period])
        return _close(rows[0]) if rows else None

    def closes(self) -> list[CloseRecord]:
        """Every close, oldest period first."""
        return [_close(row) for row in self.db.rows(f"SELECT {_CLOSE_COLUMNS} FROM period_closes ORDER BY period")]

    def open_periods_through(self, period: str, after: str | None) -> list[str]:
        """Periods up to ``period`` that have accruals and come after the last close."""
        rows = self.db.rows(
            "SELECT DISTINCT period FROM accruals WHERE period <= ? AND (? IS NULL OR period > ?) ORDER BY period",
            [period, after, after],
        )
        return [period for (period,) in rows]

    def statement_lines(self, period: str, watermark: int, previous_watermark: int) -> list[HolderLine]:
        """Accruals a close of ``period`` at ``watermark`` covers, summed per statement line.

        Covered: entries of ``period`` up to the watermark, plus entries of earlier periods
        that arrived after the previous close (prior-period adjustments).
        """
        rows = self.db.rows(
            """
            SELECT holder_id, currency, period, source_id, platform_id, model_id, kind, unit, rate, per,
                   license_id, license_version, sum(quantity), sum(amount), count(*), description
            FROM accruals
            WHERE entry_id <= ? AND (period = ? OR (period < ? AND entry_id > ?))
            GROUP BY ALL
            """,
            [watermark, period, period, previous_watermark],
        )
        return [
            HolderLine(holder_id=holder_id, currency=currency, line=StatementLine(
                period=line_period, source_id=source_id, platform_id=platform_id, model_id=model_id, kind=kind,
                unit=unit, quantity=quantity, rate=rate, per=per, amount=amount, entries=entries,
                license_id=license_id, license_version=license_version, description=description or "",
            ))
            for (holder_id, currency, line_period, source_id, platform_id, model_id, kind, unit, rate, per,
                 license_id, license_version, quantity, amount, entries, description) in rows
        ]

    def carry_ins(self, before: str) -> dict[tuple[str, str], Decimal]:
        """Each (holder, currency)'s carry out of its latest statement before ``before``."""
        rows = self.db.rows(
            "SELECT holder_id, currency, arg_max(carry_out, period) FROM statements WHERE period < ? GROUP BY ALL",
            [before],
        )
        return {(holder, currency): amount for holder, currency, amount in rows}

    def plan_entries(self, lines: Sequence[PeriodLine]) -> PlannedEntries:
        """Entry ids and chain hashes ``lines`` would get if appended now; nothing is written."""
        first = self.tip.last_entry + 1
        values = tuple(
            (entry_id, *(getattr(line, name) for name in chain.ENTRY_FIELDS[1:]))
            for entry_id, line in zip(range(first, first + len(lines)), lines)
        )
        hashes = tuple(chain.chain(self.tip.head, values))
        return PlannedEntries(
            lines=tuple(lines), values=values, hashes=hashes, last_entry_id=first + len(lines) - 1,
            chain_head=hashes[-1] if hashes else self.tip.head,
        )

    def record_close(
        self,
        close: CloseRecord,
        statements: Iterable[SignedStatement],
        *,
        planned: PlannedEntries | None = None,
        settled_revenue: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Stores a close, its period entries and its statements in one transaction.

        ``planned`` entries (see :meth:`plan_entries`) are appended to the hash chain as
        one batch; ``settled_revenue`` marks (platform, event) revenue reports as settled
        by this close. A closed period is never rewritten; on any error nothing is stored.

        Raises:
            LedgerFileError: ``planned`` was computed before another append moved the chain on.
        """
        planned_values = planned.values if planned is not None else ()
        batch_id = self.tip.last_batch + 1
        with self.db.transaction():
            if planned_values:
                self._append_planned(planned, batch_id, close)
            if settled_revenue:
                self.db.insert("revenue_settlements", pa.table({
                    "platform_id": [platform for platform, _ in settled_revenue],
                    "event_id": [event for _, event in settled_revenue],
                    "close_period": [close.period] * len(settled_revenue),
                }))
            con = self.db.con
            con.execute(
                "INSERT INTO period_closes VALUES (?, ?, ?, ?, ?)",
                [close.period, close.closed_at, close.last_entry_id, close.chain_head, close.statements],
            )
            for signed in statements:
                s = signed.statement
                con.execute(
                    "INSERT INTO statements (statement_id, period, holder_id, currency, format_version, accrued,"
                    " carry_in, payable, carry_out, content_hash, document, created_at, signature, key_fingerprint)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [s.statement_id, s.period, s.holder_id, s.currency, s.format_version, s.accrued, s.carry_in,
                     s.payable, s.carry_out, signed.content_hash, signed.document.decode(), close.closed_at,
                     signed.signature, signed.key_fingerprint],
                )
        if planned_values:
            self.tip.advance(batch_id=batch_id, last_entry=planned.last_entry_id, head=planned.chain_head)

    def _append_planned(self, planned: PlannedEntries, batch_id: int, close: CloseRecord) -> None:
        """Appends a close's period entries as one batch (inside the caller's transaction)."""
        if planned.values[0][0] != self.tip.last_entry + 1:
            raise LedgerFileError(
                f"planned entries start at {planned.values[0][0]} but the ledger ends at {self.tip.last_entry}"
            )
        self.db.insert("accruals", accruals_table(planned.values, planned.hashes, batch_id))
        self.db.con.execute(
            "INSERT INTO ingest_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
            [batch_id, close.closed_at, 0, len(planned.values), 0, 0, planned.chain_head],
        )
