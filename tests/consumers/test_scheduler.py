"""Closing on schedule: the trigger's fire times, which month is due, catch-up of missed months on start."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from consumers.scheduler import LedgerService, close_due, close_trigger, due_period
from ledger.storage.store import Ledger
from tests.ledger.keys import SIGNER
from tests.ledger.storage.test_store import batch_of

UTC = timezone.utc


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_trigger_fires_at_midnight_utc_on_the_grace_day_of_each_month():
    trigger = close_trigger(3)
    assert trigger.get_next_fire_time(None, at(2026, 5, 2, 23, 59, 59)) == at(2026, 5, 3)
    assert trigger.get_next_fire_time(None, at(2026, 5, 3, 0, 0, 1)) == at(2026, 6, 3)
    assert trigger.get_next_fire_time(at(2026, 12, 3), at(2026, 12, 3, 0, 0, 1)) == at(2027, 1, 3)
    assert close_trigger(28).get_next_fire_time(None, at(2027, 2, 1)) == at(2027, 2, 28)


@pytest.mark.parametrize(("now", "due"), [
    (at(2026, 5, 2, 23, 59, 59), "2026-03"),  # April's close time has not come
    (at(2026, 5, 3), "2026-04"),
    (at(2026, 1, 10), "2025-12"),
    (at(2026, 1, 1), "2025-11"),
])
def test_due_period_follows_the_close_time_not_the_month_end(now, due):
    assert due_period(now, 3) == due


def ledger_with_usage(path, book_text, months: list[int]) -> Ledger:
    ledger = Ledger.open(path)
    ledger.apply_licenses(book_text, "book.toml")
    book = ledger.load_book()
    for n, month in enumerate(months):
        ledger.append_batch(batch_of(book, [1_000_000], first=n, offset=n, when=at(2026, month, 10)))
    return ledger


def test_close_due_catches_up_every_missed_month_once(tmp_path, license_book_text):
    with ledger_with_usage(tmp_path / "ledger.duckdb", license_book_text, [2, 3, 4]) as ledger:
        assert close_due(ledger, at(2026, 5, 2, 12), 3, SIGNER) == ("2026-02", "2026-03")
        assert close_due(ledger, at(2026, 5, 2, 13), 3, SIGNER) == ()
        assert close_due(ledger, at(2026, 5, 3), 3, SIGNER) == ("2026-04",)
        assert [row.period for row in ledger.statement_rows()] == ["2026-02", "2026-03", "2026-04"]


@pytest.mark.broker
def test_the_service_closes_missed_months_on_start_and_publishes_them(make_settings, tmp_path, license_book_text):
    settings = make_settings().model_copy(update={"signing_key": tmp_path / "keys" / "signing.pem"})
    with ledger_with_usage(settings.db, license_book_text, [1, 2, 3]) as ledger:
        service = LedgerService(settings, ledger, clock=lambda: at(2026, 5, 20, 8))
        service.stop()  # run() still does its start-up work: catch up, then publish
        service.run()
        closes = ledger.query("SELECT period FROM period_closes ORDER BY period")
        assert closes == [("2026-01",), ("2026-02",), ("2026-03",), ("2026-04",)]
        assert [row.period for row in ledger.statement_rows()] == ["2026-01", "2026-02", "2026-03"]
        assert ledger.unpublished_statements() == []
        published = ledger.query("SELECT count(DISTINCT statement_id), min(topic) FROM statement_publications")
        assert published == [(3, settings.kafka.topics.statements)]
    assert (tmp_path / "keys" / "signing.pem").stat().st_mode & 0o777 == 0o600
