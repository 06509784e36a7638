"""Quarantine rows carry stable error codes; rows from before codes read with their class's code."""

from __future__ import annotations

import duckdb
import pytest

from consumers.batch import PendingCorrectionError
from consumers.replay import replay_quarantine
from ground.errors import error_classes, error_code
from ledger.core.records import IngestBatch, QuarantineRow
from ledger.errors import NoLicenseError
from ledger.storage.migrations import CODES_BEFORE_5
from ledger.storage.store import Ledger


def refused(offset: int, error: Exception) -> QuarantineRow:
    return QuarantineRow(topic="t", partition=0, offset=offset, key=b"k", value=b"not avro",
                         headers=(("trace", b"\x01\x02"),), error_code=error_code(error),
                         error_class=type(error).__name__, reason=str(error), platform_id="p", event_id=f"e{offset}")


@pytest.fixture
def path(tmp_path):
    """A ledger with a row quarantined today and one as a Learnright before codes wrote it."""
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as ledger:
        ledger.append_batch(IngestBatch(quarantined=(refused(0, NoLicenseError("no license for src-x")),),
                                        offsets={("t", 0): 1}))
    # Simulates a row written before migration 5: no code, only the class name. The ledger
    # itself cannot write one (it is append-only and stores a code with every row).
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO quarantine (quarantine_id, batch_id, topic, kafka_partition, kafka_offset, record_key,"
                " record_value, headers, error_class, reason, quarantined_at)"
                " VALUES (2, 1, 't', 0, 1, NULL, 'x', '{}', 'PendingCorrectionError', 'waits for e0', now())")
    con.close()
    return path


def test_new_rows_store_the_code_and_the_class_and_old_rows_read_with_their_class_code(path):
    with Ledger.open(path) as ledger:
        stored = ledger.query("SELECT error_code, error_class FROM quarantine ORDER BY quarantine_id")
        records = ledger.open_quarantine()
        counts = {code: ledger.open_quarantine_count(code) for code in ("no_license", "correction_pending", "other")}
    assert stored == [("no_license", "NoLicenseError"), (None, "PendingCorrectionError")]
    assert [(r.quarantine_id, r.error_code, r.error_class) for r in records] == [
        (1, "no_license", "NoLicenseError"), (2, "correction_pending", "PendingCorrectionError")]
    assert records[0].headers == (("trace", b"\x01\x02"),) and records[0].key == b"k"
    assert counts == {"no_license": 1, "correction_pending": 1, "other": 0}


@pytest.mark.parametrize(("error", "replayed"), [
    ("no_license", [1]), ("NoLicenseError", [1]), ("correction_pending", [2]), ("PendingCorrectionError", [2]),
    ("unknown_source", []), (None, [1, 2]),
])
def test_replay_picks_records_by_code_or_by_class_name(path, error, replayed):
    with Ledger.open(path) as ledger:
        outcome = replay_quarantine(ledger, error=error)
    # Their bytes are not Avro: each replayed record fails again, now as undecodable.
    assert [s.quarantine_id for s in outcome.still_quarantined] == replayed
    assert {s.error_code for s in outcome.still_quarantined} <= {"undecodable"}
    assert outcome.attempted == len(replayed) and outcome.booked == 0


def test_the_codes_of_old_rows_are_the_codes_their_classes_still_have():
    """A code is stable: the class a pre-code row names must still carry the code it is read with."""
    by_name = {cls.__name__: code for code, cls in error_classes().items()}
    assert {name: by_name.get(name) for name in CODES_BEFORE_5} == CODES_BEFORE_5
    assert PendingCorrectionError.code == CODES_BEFORE_5["PendingCorrectionError"]
