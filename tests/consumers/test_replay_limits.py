"""A replay bounds ``occurred_at`` as ingestion did: by the quarantined record's own Kafka
timestamp, kept in the quarantine row; a row from before ledger schema 6, which kept none,
by its quarantine time. Real DuckDB ledgers, no broker.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb

from consumers.batch import RawRecord, build_batch
from consumers.replay import replay_quarantine
from ledger.core.records import IngestBatch, QuarantineRow
from ledger.storage.store import Ledger
from schemas import default_catalog, encode
from tests.conftest import BOOK

CATALOG = default_catalog()
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def training(event_id: str, occurred_at: datetime, source_id: str = "src-photos") -> bytes:
    return encode({"event_id": event_id, "platform_id": "orbit", "model_id": "m", "run_id": "r",
                   "source_id": source_id, "units": 2, "unit": "items", "occurred_at": occurred_at,
                   "base_model_id": None, "metadata": {}}, CATALOG.latest("TrainingUsage"))


def test_a_replay_decides_by_the_records_own_timestamp_whenever_it_runs(tmp_path):
    stamped = datetime(2026, 4, 1, tzinfo=timezone.utc)
    stamp_ms = (stamped - EPOCH) // timedelta(milliseconds=1)
    records = [RawRecord(topic="t", partition=0, offset=0, timestamp=stamp_ms, key=None,
                         value=training("late", stamped + timedelta(hours=2))),
               RawRecord(topic="t", partition=0, offset=1, timestamp=stamp_ms, key=None,
                         value=training("unlicensed", stamped, source_id="src-songs"))]
    with Ledger.open(tmp_path / "l.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        ledger.append_batch(build_batch(records, ledger.load_book(), ledger, CATALOG))
        assert [r.record_timestamp for r in ledger.open_quarantine()] == [stamp_ms, stamp_ms]
        # Months later (the clock says 2026-11 or after), the same records decide the same way.
        outcome = replay_quarantine(ledger)
    assert (outcome.attempted, outcome.booked) == (2, 0)
    assert [s.error_code for s in outcome.still_quarantined] == ["occurred_in_future", "unknown_source"]
    assert "reported at 2026-04-01T00:00:00.000Z" in outcome.still_quarantined[0].reason


def test_a_row_quarantined_before_timestamps_were_kept_is_bounded_by_its_quarantine_time(tmp_path):
    now = datetime.now(timezone.utc)
    rows = [QuarantineRow(topic="t", partition=0, offset=offset, key=None, value=training(event_id, occurred_at),
                          headers=(), error_code="no_license", error_class="NoLicenseError", reason="old")
            for offset, (event_id, occurred_at) in enumerate([("soon", now + timedelta(hours=3)),
                                                              ("past", datetime(2026, 4, 1, tzinfo=timezone.utc))])]
    path = tmp_path / "l.duckdb"
    with Ledger.open(path) as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        ledger.append_batch(IngestBatch(quarantined=tuple(rows), offsets={}))
    with duckdb.connect(str(path)) as con:  # as a ledger of schema 5 stored them: no timestamp
        assert con.execute("SELECT count(*) FROM quarantine WHERE record_timestamp IS NULL").fetchall() == [(2,)]
        quarantined_ms = con.execute("SELECT epoch_ms(min(quarantined_at)) FROM quarantine").fetchall()[0][0]
    with Ledger.open(path) as ledger:
        assert [r.record_timestamp for r in ledger.open_quarantine()] == [quarantined_ms, quarantined_ms]
        outcome = replay_quarantine(ledger)
        assert (outcome.attempted, outcome.booked) == (2, 1)
        assert [s.error_code for s in outcome.still_quarantined] == ["occurred_in_future"]
        assert ledger.query("SELECT event_id FROM usage_events") == [("past",)]
