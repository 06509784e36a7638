"""Quarantine replay and corrections (on the real broker), and the retry every close makes first."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from consumers.batch import RawRecord, build_batch
from consumers.replay import retry_and_close
from learnright.cli import app
from ledger.core import chain
from ledger.storage.store import Ledger
from schemas import default_catalog, encode
from tests.conftest import BOOK
from tests.consumers.helpers import consume_all, emitter_for
from tests.ledger.keys import SIGNER

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


@pytest.mark.broker
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


@pytest.mark.broker
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
        rows = ledger.query("SELECT event_id, quantity, amount, reverses_entry_key IS NOT NULL FROM accruals ORDER BY entry_id")
        assert rows == [("t1", 10, 50, False), ("c1", -10, -50, True), ("c1", 4, 20, False)]
        assert ledger.open_quarantine() == []
        # A second correction of the same event is refused, not applied twice.
        with emitter_for(settings) as emitter:
            emitter.correct(event_id="c2", corrects_event_id="t1", action="VOID", occurred_at=APRIL)
        third = consume_all(settings, ledger)
        assert third.by_error == {"CorrectionError": 1}
        assert ledger.query("SELECT sum(amount) FROM accruals")[0][0] == 20


# -- the retry before every close ---------------------------------------------------------------

CATALOG = default_catalog()
SONGS_LATER = """
format = 1
[[holders]]
id = "h-cy"
[[sources]]
id = "src-songs"
holder = "h-cy"
[[licenses]]
id = "lic-songs"
source = "src-songs"
effective_from = 2026-06-01T00:00:00Z
currency = "EUR"
training = { rate = 2, per = 1, unit = "seconds" }
"""
"""src-songs is known, but licensed only from June: April usage of it is quarantined as no_license."""
SONGS_FROM_JANUARY = """
format = 1
[[holders]]
id = "h-cy"
[[sources]]
id = "src-songs"
holder = "h-cy"
[[licenses]]
id = "lic-songs-early"
source = "src-songs"
effective_from = 2026-01-01T00:00:00Z
currency = "EUR"
training = { rate = 3, per = 1, unit = "seconds" }
"""
STAMP_MS = (APRIL - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)


def record(topic: str, offset: int, name: str, fields: dict) -> RawRecord:
    value = encode({"platform_id": "orbit", "occurred_at": APRIL, **fields}, CATALOG.latest(name))
    return RawRecord(topic=topic, partition=0, offset=offset, timestamp=STAMP_MS, key=None, value=value)


USAGE = record("t.usage.training", 0, "TrainingUsage", {
    "event_id": "t1", "model_id": "m", "run_id": "r", "source_id": "src-songs", "units": 30, "unit": "seconds",
    "base_model_id": None, "metadata": {}})
CORRECTION = record("t.usage.corrections", 0, "UsageCorrection", {
    "event_id": "c1", "corrects_event_id": "t1", "action": "REPLACE", "replacement_units": 20,
    "replacement_attributions": None, "reason": "meter double-counted"})


def test_the_close_retries_a_pending_correction_and_unlicensed_usage_as_if_booked_on_arrival(tmp_path):
    """Ledger ``late``: the correction arrives before its original, the original before its license;
    the close's retry books both. Ledger ``early``: license first, then original, then correction,
    each booked on arrival. Same entries, same close root, same statements."""
    late_path, early_path = tmp_path / "late.duckdb", tmp_path / "early.duckdb"
    with Ledger.open(late_path) as late:
        late.apply_licenses(BOOK + SONGS_LATER, "book.toml")
        for raw in (CORRECTION, USAGE):
            late.append_batch(build_batch([raw], late.load_book(), late, CATALOG))
        assert sorted(r.error_code for r in late.open_quarantine()) == ["correction_pending", "no_license"]
        late.apply_licenses(SONGS_FROM_JANUARY, "songs.toml")
        retried, outcome = retry_and_close(late, "2026-04", now=datetime(2026, 5, 3, tzinfo=timezone.utc),
                                           signer=SIGNER)
        assert (retried.attempted, retried.booked, retried.still_quarantined) == (2, 2, ())
        assert outcome.closed_periods == ("2026-04",) and late.open_quarantine() == []
        # 30 s booked at 3 EUR, reversed, then the replacement's 20 s: 60 EUR in the statement.
        assert [r.accrued for r in late.statement_rows()] == [Decimal(60)]
    with Ledger.open(early_path) as early:
        early.apply_licenses(BOOK + SONGS_LATER, "book.toml")
        early.apply_licenses(SONGS_FROM_JANUARY, "songs.toml")
        for raw in (USAGE, CORRECTION):
            early.append_batch(build_batch([raw], early.load_book(), early, CATALOG))
        assert early.open_quarantine() == []
        retried, _ = retry_and_close(early, "2026-04", now=datetime(2026, 5, 3, tzinfo=timezone.utc), signer=SIGNER)
        assert retried.attempted == 0
    entries = f"SELECT {', '.join(chain.ENTRY_FIELDS)}, entry_hash FROM accruals ORDER BY stream, position, line"
    with Ledger.open(late_path, read_only=True) as late, Ledger.open(early_path, read_only=True) as early:
        assert late.query(entries) == early.query(entries)
        assert [chain.entry_key(*row[:3]) for row in late.query(entries)] == [
            "t.usage.corrections/0@0#0", "t.usage.corrections/0@0#1", "t.usage.training/0@0#0"]
        assert late.get_close("2026-04").root == early.get_close("2026-04").root
        assert [s.content_hash for s in late.stored_statements("2026-04")] == [
            s.content_hash for s in early.stored_statements("2026-04")]


def test_nothing_is_retried_when_the_close_would_not_close(tmp_path):
    with Ledger.open(tmp_path / "l.duckdb") as ledger:
        ledger.apply_licenses(BOOK + SONGS_LATER, "book.toml")
        ledger.append_batch(build_batch([USAGE], ledger.load_book(), ledger, CATALOG))
        ledger.apply_licenses(SONGS_FROM_JANUARY, "songs.toml")
        with pytest.raises(Exception, match="has not ended"):
            retry_and_close(ledger, "2026-04", now=datetime(2026, 4, 20, tzinfo=timezone.utc), signer=SIGNER)
        assert [r.error_code for r in ledger.open_quarantine()] == ["no_license"]
