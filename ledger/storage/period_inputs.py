"""What the period terms of a close are computed from: usage totals, training, lineage, revenue.

Read-only aggregates over ``accruals``, ``model_lineage`` and ``revenue_reports``; the
terms themselves are computed in :mod:`ledger.core.period_terms`. Every read is ordered,
so a close that runs again reads the same rows in the same order.
"""

from __future__ import annotations

from typing import Collection, Iterator, Sequence

from ledger.core.period_terms import ModelTraining, UsageTotal
from ledger.core.usage import RevenueReport
from ledger.storage.connection import Db


def _columns(db: Db, sql: str, params: Sequence[object]) -> Iterator[tuple]:
    """The rows of ``sql`` read from Arrow columns: a close sums one row per usage line, and DuckDB's
    row-wise fetch costs more than the query (the values are the same)."""
    table = db.con.execute(sql, list(params)).to_arrow_table()
    return zip(*(column.to_pylist() for column in table.columns))


class PeriodInputRepository:
    def __init__(self, db: Db):
        self.db = db

    def usage_totals(self, periods: Sequence[str], watermark: int,
                     sources: Collection[str] | None = None) -> list[UsageTotal]:
        """Per-event accruals (training, inference) of ``periods`` up to ``watermark``, summed; of ``sources``
        only, when given (none read at all when it is empty)."""
        if sources is not None and not sources:
            return []
        rows = _columns(
            self.db,
            f"""
            SELECT period, platform_id, source_id, kind, license_id, license_version, currency, unit,
                   sum(quantity), sum(amount)
            FROM accruals
            WHERE entry_id <= ? AND list_contains(?, period) AND kind IN ('training', 'inference')
              {"" if sources is None else "AND source_id IN (SELECT unnest(?::VARCHAR[]))"}
            GROUP BY ALL ORDER BY ALL
            """,
            [watermark, list(periods), *([] if sources is None else [sorted(sources)])],
        )
        return [
            UsageTotal(period=period, platform_id=platform_id, source_id=source_id, kind=kind, license_id=license_id,
                       license_version=license_version, currency=currency, unit=unit, quantity=quantity, amount=amount)
            for (period, platform_id, source_id, kind, license_id, license_version, currency, unit, quantity,
                 amount) in rows
        ]

    def model_training(self, through: str, watermark: int) -> list[ModelTraining]:
        """Training units per platform, model, source and month up to ``through``."""
        rows = _columns(
            self.db,
            """
            SELECT platform_id, model_id, source_id, period, sum(quantity)
            FROM accruals WHERE entry_id <= ? AND period <= ? AND kind = 'training'
            GROUP BY ALL ORDER BY ALL
            """,
            [watermark, through],
        )
        return [
            ModelTraining(platform_id=platform_id, model_id=model_id, source_id=source_id, period=period, units=units)
            for platform_id, model_id, source_id, period, units in rows
        ]

    def model_lineage(self) -> dict[tuple[str, str], str]:
        """The base of each fine-tuned (platform, model): the first declared, by occurred_at then event."""
        rows = self.db.rows(
            "SELECT platform_id, model_id, arg_min(base_model_id, (occurred_at, event_id))"
            " FROM model_lineage GROUP BY ALL"
        )
        return {(platform, model): base for platform, model, base in rows}

    def unsettled_revenue(self, through: str) -> list[RevenueReport]:
        """Revenue reports for months up to ``through`` that no close has settled yet."""
        rows = self.db.rows(
            """
            SELECT r.event_id, r.platform_id, r.model_id, r.period, r.revenue, r.currency, r.occurred_at
            FROM revenue_reports r
            WHERE r.period <= ? AND NOT EXISTS (
                SELECT 1 FROM revenue_settlements s WHERE s.platform_id = r.platform_id AND s.event_id = r.event_id)
            ORDER BY r.period, r.platform_id, r.event_id
            """,
            [through],
        )
        return [
            RevenueReport(event_id=event_id, platform_id=platform_id, model_id=model_id, period=period,
                          revenue=revenue, currency=currency, occurred_at=occurred_at)
            for event_id, platform_id, model_id, period, revenue, currency, occurred_at in rows
        ]
