"""A ledger with two rights holders and three closed months, booked without a broker.

    h-ann (src-novels, USD): training 1M, 2M, 3M tokens in Feb, Mar, Apr 2026
    h-bo  (src-photos, JPY): training 10, 20, 30 items in the same months
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from ledger.services.close import close_period
from ledger.core.pricing import price
from ledger.core.records import EventRow, IngestBatch
from ledger.storage.store import Ledger
from ledger.core.usage import TrainingUsage

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
MONTHS = ("2026-02", "2026-03", "2026-04")


def close(ledger: Ledger, period: str, now: datetime = NOW):
    """close_period, with the test signing key when this build signs statements (issue 6)."""
    if "signer" in inspect.signature(close_period).parameters:
        from tests.ledger.keys import SIGNER

        return close_period(ledger, period, now=now, signer=SIGNER)
    return close_period(ledger, period, now=now)


def book_two_holders(path: Path, book_text: str) -> Path:
    with Ledger.open(path) as ledger:
        ledger.apply_licenses(book_text, "book.toml")
        book = ledger.load_book()
        offset = 0
        for month_number, period in enumerate(MONTHS, start=1):
            when = datetime(2026, 1 + month_number, 20, tzinfo=timezone.utc)
            events, accruals = [], []
            for source, units, unit in (("src-novels", 1_000_000 * month_number, "tokens"),
                                        ("src-photos", 10 * month_number, "items")):
                event = TrainingUsage(event_id=f"e{offset}", platform_id="p", model_id="m", run_id="r",
                                      source_id=source, units=units, unit=unit, occurred_at=when)
                accruals.extend(replace(a, stream="t/0", position=offset) for a in price(event, book))
                events.append(EventRow(platform_id="p", event_id=event.event_id, event_type="TrainingUsage",
                                       content_hash=f"h{offset}", model_id="m", occurred_at=when, period=period,
                                       topic="t", partition=0, offset=offset))
                offset += 1
            ledger.append_batch(IngestBatch(events=tuple(events), accruals=tuple(accruals),
                                            offsets={("t", 0): offset}))
            close(ledger, period)
    return path
