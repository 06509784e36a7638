"""Closing on schedule: the trigger's fire times, which month is due, catch-up of missed months on start,
and the backlog in Kafka booked before a month closes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from consumers.scheduler import LedgerService, close_due, close_trigger, due_period
from ledger.storage.store import Ledger
from tests.consumers.helpers import emitter_for
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


@contextmanager
def serving(settings, ledger: Ledger, now: datetime) -> Iterator[LedgerService]:
    """The service in a thread, its clock stopped at ``now``; stopped (and its failure raised) on exit."""
    service = LedgerService(settings, ledger, clock=lambda: now)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop()
        thread.join(timeout=60)
    if failures:
        raise failures[0]


def wait_for_close(ledger: Ledger, period: str, timeout_s: float = 120.0, *, published: bool = False) -> None:
    """Waits (on a reader cursor: the service thread writes) until ``period`` is closed and, with ``published``,
    until the outbox is empty too.

    Publishing follows the close and is retried after ``PUBLISH_RETRY_S`` when the broker does not answer in
    time, which a loaded machine can make happen: a test that stopped the service at the close would find
    events still pending. The wait ends as soon as the ledger is there; only a failure waits it out.
    """
    reader = ledger.reader()
    try:
        deadline = time.monotonic() + timeout_s
        while reader.get_close(period) is None or (published and reader.unpublished_statements()):
            if time.monotonic() > deadline:
                what = "published" if reader.get_close(period) is not None else "closed"
                raise AssertionError(f"{period} was not {what} within {timeout_s}s")
            time.sleep(0.1)
    finally:
        reader.close()


def emit_month(settings, month: int, count: int) -> None:
    """``count`` training and ``count`` inference events of platform orbit on the 10th of ``month`` 2026."""
    with emitter_for(settings) as emitter:
        for i in range(count):
            emitter.training(event_id=f"t{month}-{i}", model_id="m", run_id="r", source_id="src-photos", units=2,
                             unit="items", occurred_at=at(2026, month, 10))
            emitter.inference(event_id=f"i{month}-{i}", model_id="m", request_id=f"q{i}",
                              attributions={"src-novels": "0.5"}, occurred_at=at(2026, month, 10))


def assert_the_close_covers_every_booked_entry(ledger: Ledger, period: str, records: int) -> None:
    """Everything in Kafka is booked up to the close's cut-off and stated by ``period``'s close: no prior-period line."""
    close = ledger.get_close(period)
    assert sum(ledger.close_cutoff(period).values()) == records
    assert ledger.query("SELECT count(*) FROM accruals WHERE entry_id > ?", [close.last_entry_id]) == [(0,)]
    documents = [json.loads(s.document) for s in ledger.stored_statements(period)]
    assert documents and not any(line["prior_period_adjustment"] for d in documents for line in d["lines"])
    stated = sum(line["entries"] for d in documents for line in d["lines"])
    assert stated == ledger.scalar("SELECT count(*) FROM accruals WHERE period = ?", [period])


@pytest.mark.broker
def test_the_service_closes_missed_months_on_start_and_publishes_them(make_settings, tmp_path, license_book_text):
    settings = make_settings().model_copy(update={"signing_key": tmp_path / "keys" / "signing.pem"})
    with ledger_with_usage(settings.db, license_book_text, [1, 2, 3]) as ledger:
        with serving(settings, ledger, at(2026, 5, 20, 8)):
            wait_for_close(ledger, "2026-04", published=True)
        closes = ledger.query("SELECT period FROM period_closes ORDER BY period")
        assert closes == [("2026-01",), ("2026-02",), ("2026-03",), ("2026-04",)]
        assert [row.period for row in ledger.statement_rows()] == ["2026-01", "2026-02", "2026-03"]
        assert ledger.unpublished_statements() == []
        published = ledger.query("SELECT count(DISTINCT statement_id), min(topic) FROM statement_publications")
        assert published == [(3, settings.kafka.topics.statements)]
    assert (tmp_path / "keys" / "signing.pem").stat().st_mode & 0o777 == 0o600


@pytest.mark.broker
def test_a_service_started_on_a_fresh_ledger_books_the_backlog_then_closes_the_month(
        make_settings, tmp_path, license_book_text):
    """Before: the close ran before anything was consumed, found no usage and waited for June."""
    settings = make_settings(max_batch=50).model_copy(update={"signing_key": tmp_path / "key.pem"})
    emit_month(settings, 4, 100)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        with serving(settings, ledger, at(2026, 5, 20, 8)):
            wait_for_close(ledger, "2026-04")
        assert ledger.query("SELECT period FROM period_closes") == [("2026-04",)]
        assert_the_close_covers_every_booked_entry(ledger, "2026-04", 200)
        # 100 x 2 items x 5 JPY; 100 x 0.5 x 0.003 USD.
        assert {r.currency: r.accrued for r in ledger.statement_rows()} == {"JPY": Decimal(1000),
                                                                            "USD": Decimal("0.15")}


@pytest.mark.broker
def test_a_service_restarted_after_a_missed_close_books_the_month_first(make_settings, tmp_path, license_book_text):
    """March was closed; April's usage waited in Kafka while the service was down past May's grace day.
    Before: April closed empty on start and its usage became prior-period lines of May."""
    settings = make_settings(max_batch=50).model_copy(update={"signing_key": tmp_path / "key.pem"})
    emit_month(settings, 3, 20)
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        with serving(settings, ledger, at(2026, 4, 4)):
            wait_for_close(ledger, "2026-03")
        emit_month(settings, 4, 60)
        with serving(settings, ledger, at(2026, 5, 20, 8)):
            wait_for_close(ledger, "2026-04")
        assert ledger.query("SELECT period FROM period_closes ORDER BY period") == [("2026-03",), ("2026-04",)]
        assert_the_close_covers_every_booked_entry(ledger, "2026-04", 160)
        assert {r.currency: r.accrued for r in ledger.statement_rows(period="2026-04")} == {
            "JPY": Decimal(600), "USD": Decimal("0.09")}
