"""Quarantine replay and corrections on the real broker."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from learnright.cli import app
from ledger.storage.store import Ledger
from tests.consumers.helpers import consume_all, emitter_for

pytestmark = pytest.mark.broker
APRIL = datetime(2026, 4, 10, tzinfo=timezone.utc)
LATE_LICENSE = """
format = 1
[[holders]]
id = "h-cy"
[[sources]]
id = "src-songs"
holder = "h-cy"
[[licenses]]
id = "lic-songs"
source = "src-songs"
effective_from = 2026-01-01T00:00:00Z
currency = "EUR"
training = { rate = 2, per = 1, unit = "seconds" }
"""


def test_an_unlicensed_event_replays_once_after_its_license_is_added(make_settings, license_book_text):
    settings = make_settings()
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        with emitter_for(settings) as emitter:
            emitter.training(event_id="s1", model_id="m", run_id="r", source_id="src-songs", units=30,
                             unit="seconds", occurred_at=APRIL)
        stats = consume_all(settings, ledger)
        assert (stats.accepted, stats.quarantined) == (0, 1)
        ledger.apply_licenses(LATE_LICENSE, "late.toml")
    runner = CliRunner()
    listed = runner.invoke(app, ["quarantine", "list", "--db", str(settings.db)])
    assert "UnknownSourceError" in listed.output and "1 open" in listed.output
    first = runner.invoke(app, ["quarantine", "replay", "--db", str(settings.db)])
    assert "replayed 1: 1 booked" in first.output, first.output
    again = runner.invoke(app, ["quarantine", "replay", "--db", str(settings.db)])
    assert "replayed 0: 0 booked" in again.output
    with Ledger.open(settings.db) as ledger:
        assert ledger.query("SELECT count(*), sum(amount), min(currency) FROM accruals") == [(1, Decimal(60), "EUR")]


def test_a_correction_before_its_original_waits_then_applies(make_settings, license_book_text):
    settings = make_settings()
    with Ledger.open(settings.db) as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        with emitter_for(settings) as emitter:
            emitter.correct(event_id="c1", corrects_event_id="t1", action="REPLACE", replacement_units=4,
                            occurred_at=APRIL, reason="meter double-counted")
        first = consume_all(settings, ledger)
        assert (first.accepted, first.quarantined, first.by_error) == (0, 1, {"PendingCorrectionError": 1})
        with emitter_for(settings) as emitter:
            emitter.training(event_id="t1", model_id="m", run_id="r", source_id="src-photos", units=10,
                             unit="items", occurred_at=APRIL)
        consume_all(settings, ledger)
        rows = ledger.query("SELECT event_id, quantity, amount, reverses_entry_id IS NOT NULL FROM accruals ORDER BY entry_id")
        assert rows == [("t1", 10, 50, False), ("c1", -10, -50, True), ("c1", 4, 20, False)]
        assert ledger.open_quarantine() == []
        # A second correction of the same event is refused, not applied twice.
        with emitter_for(settings) as emitter:
            emitter.correct(event_id="c2", corrects_event_id="t1", action="VOID", occurred_at=APRIL)
        third = consume_all(settings, ledger)
        assert third.by_error == {"CorrectionError": 1}
        assert ledger.query("SELECT sum(amount) FROM accruals")[0][0] == 20
