"""Royalties of one rights holder per month and source, from their closed statements.

Pure: statement documents in, exact totals out. What a holder's chart shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthlyRoyalty:
    period: str
    currency: str
    source_id: str
    amount: Decimal


def monthly_by_source(documents: Iterable[dict]) -> tuple[MonthlyRoyalty, ...]:
    """Accrued amount per (statement period, currency, source), summed over statement lines."""
    totals: dict[tuple[str, str, str], Decimal] = {}
    for document in documents:
        for line in document.get("lines", ()):
            key = (document["period"], document["currency"], line["source_id"])
            totals[key] = totals.get(key, Decimal(0)) + Decimal(line["amount"])
    return tuple(MonthlyRoyalty(period=p, currency=c, source_id=s, amount=a) for (p, c, s), a in sorted(totals.items()))
