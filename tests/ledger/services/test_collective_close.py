"""A collective through two closes of a real ledger file: rule change mid-month, member statements, carries.

Book: collective cmo-duo (members m-eva and m-finn, m-finn's USD payout minimum 10), sources
src-eva (Eva's) and src-shared (pooled 50 / 40 from 1 April, so 10 % undistributed; 50 / 50
from 16 April). Management fee 20 %, capped at USD 5 a month. License: training 1.00 USD a unit.

April: src-eva 20 units (2 Apr), src-shared 10 units (5 Apr, rule v1) and 10 units (20 Apr, v2).
  gross: Eva 20 + 5 + 5 = 30, Finn 4 + 5 = 9, undistributed 1; fee 20 % = 8 > cap 5: scaled 5/8:
  Eva 3.75, Finn 1.125, undistributed 0.125; net Eva 26.25, Finn 7.875, undistributed 0.875.
  Eva pays 26.25; Finn's 7.875 is under 10: pays 0, carries 7.875.
May: src-shared 10 units (v2): Eva 5, Finn 5; fee 2 + 2 = ... 20 % of 10 = 2 (no cap hit): Eva 1, Finn 1;
  net Eva 4, Finn 4 -> Finn 4 + 7.875 = 11.875: pays 11.88, carries -0.005.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import duckdb
import pytest

from ledger.core.envelope import verify_envelope
from ledger.core.pricing import price
from ledger.core.records import EventRow, IngestBatch
from ledger.core.usage import TrainingUsage
from ledger.services.close import close_period
from ledger.services.distributions import member_statement_file
from ledger.services.verify import verify
from ledger.storage.store import Ledger
from tests.ledger.keys import SIGNER

BOOK = """
[[holders]]
id = "cmo-duo"
name = "Duo Collective"
members = [{ id = "m-eva", name = "Eva" }, { id = "m-finn", name = "Finn", payout_minimum = { USD = 10 } }]

[[sources]]
id = "src-eva"
holder = "cmo-duo"

[[sources]]
id = "src-shared"
holder = "cmo-duo"

[[licenses]]
id = "lic-eva"
source = "src-eva"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = { rate = 1, per = 1, unit = "units" }

[[licenses]]
id = "lic-shared"
source = "src-shared"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = { rate = 1, per = 1, unit = "units" }

[[distributions]]
collective = "cmo-duo"
version = 1
effective_from = 2026-04-01T00:00:00Z
management_fee = { percent = 20, cap = { USD = 5 } }
members.m-eva = { sources = ["src-eva"], shares = { src-shared = 50 } }
members.m-finn = { shares = { src-shared = 40 } }

[[distributions]]
collective = "cmo-duo"
version = 2
effective_from = 2026-04-16T00:00:00Z
management_fee = { percent = 20, cap = { USD = 5 } }
members.m-eva = { sources = ["src-eva"], shares = { src-shared = 50 } }
members.m-finn = { shares = { src-shared = 50 } }
"""


def usage(event_id: str, month: int, day: int, source: str, units: int) -> TrainingUsage:
    return TrainingUsage(event_id=event_id, platform_id="orbit", model_id="orbit-base", run_id="run", source_id=source,
                         units=units, unit="units", occurred_at=datetime(2026, month, day, 12, tzinfo=timezone.utc))


def ingest(ledger: Ledger, events: list[TrainingUsage], first_offset: int) -> None:
    book = ledger.load_book()
    accruals, rows = [], []
    for n, event in enumerate(events):
        offset = first_offset + n
        accruals.extend(replace(a, stream="usage/0", position=offset) for a in price(event, book))
        rows.append(EventRow(platform_id="orbit", event_id=event.event_id, event_type="TrainingUsage",
                             content_hash=f"hash-{event.event_id}", model_id=event.model_id,
                             occurred_at=event.occurred_at, period=event.occurred_at.strftime("%Y-%m"),
                             topic="usage", partition=0, offset=offset))
    ledger.append_batch(IngestBatch(events=tuple(rows), accruals=tuple(accruals), revenues=(), lineage=(),
                                    offsets={("usage", 0): first_offset + len(rows)}))


def two_closes(opened: Ledger) -> None:
    opened.apply_licenses(BOOK, "duo.toml")
    ingest(opened, [usage("a", 4, 2, "src-eva", 20), usage("b", 4, 5, "src-shared", 10),
                    usage("c", 4, 20, "src-shared", 10)], 0)
    close_period(opened, "2026-04", now=datetime(2026, 5, 3, tzinfo=timezone.utc), signer=SIGNER)
    ingest(opened, [usage("d", 5, 7, "src-shared", 10)], 3)
    close_period(opened, "2026-05", now=datetime(2026, 6, 3, tzinfo=timezone.utc), signer=SIGNER)


@pytest.fixture
def ledger(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as opened:
        two_closes(opened)
        yield opened


def test_members_get_signed_statements_that_carry_like_holders(ledger):
    found = {(m.period, m.member_id): (m.net, m.payable, m.carry_out) for m in ledger.member_statements()}
    assert found == {
        ("2026-04", "m-eva"): (Decimal("26.25"), Decimal("26.25"), Decimal(0)),
        ("2026-04", "m-finn"): (Decimal("7.875"), Decimal(0), Decimal("7.875")),
        ("2026-05", "m-eva"): (Decimal(4), Decimal(4), Decimal(0)),
        ("2026-05", "m-finn"): (Decimal(4), Decimal("11.88"), Decimal("-0.005")),
    }
    for record in ledger.member_statements():
        data = member_statement_file(ledger, record.statement_id)
        checked = verify_envelope(data, SIGNER.key.public_key(), record.statement_id)
        assert checked.holder_id == record.member_id
        collective = ledger.statement_document(json.loads(record.document)["collective"]["statement_id"])
        assert json.loads(record.document)["collective"]["content_hash"] == collective.content_hash
        assert member_statement_file(ledger, record.statement_id, "pdf").startswith(b"%PDF")
        assert b"distribution,management_fee" in member_statement_file(ledger, record.statement_id, "csv")
    assert member_statement_file(ledger, "ms_unknown") is None


def test_collective_statement_shows_the_split_and_the_audit_view_reconciles(ledger):
    (april,) = ledger.statement_rows(period="2026-04")
    section = json.loads(ledger.statement_document(april.statement_id).document)["distribution"]
    assert section["management_fee"] == {"amount": "5.000000000000", "cap": "5", "capped": True}
    assert section["rule_versions"] == [1, 2]
    assert section["undistributed"]["amount"] == "0.875000000000"
    (may,) = ledger.statement_rows(period="2026-05")
    held = json.loads(ledger.statement_document(may.statement_id).document)["distribution"]["undistributed"]["held"]
    assert held == [{"period": "2026-04", "amount": "0.875000000000", "age_months": 1}]
    rows = ledger.query("SELECT period, members_net, management_fee, undistributed, difference"
                        " FROM audit_distribution_reconciliation ORDER BY period")
    assert rows == [("2026-04", Decimal("34.125"), Decimal(5), Decimal("0.875"), Decimal(0)),
                    ("2026-05", Decimal(8), Decimal(2), Decimal(0), Decimal(0))]
    assert ledger.query("SELECT count(*) FROM audit_distribution_rules") == [(2,)]
    assert ledger.query("SELECT member_id FROM audit_collective_members ORDER BY 1") == [("m-eva",), ("m-finn",)]
    assert verify(ledger).ok


def test_the_month_files_include_each_members_statement_and_they_verify(ledger, tmp_path):
    from ledger.services.close import write_period_files

    written = {p.name for p in write_period_files(ledger, "2026-04", tmp_path / "out")}
    for member in ("m-eva", "m-finn"):
        assert {f"2026-04_cmo-duo_{member}_USD.{ext}" for ext in ("json", "csv", "pdf")} <= written
        data = (tmp_path / "out" / f"2026-04_cmo-duo_{member}_USD.json").read_bytes()
        assert verify_envelope(data, SIGNER.key.public_key(), member).holder_id == member


def test_verify_finds_a_member_statement_changed_behind_the_ledgers_back(tmp_path):
    path = tmp_path / "ledger.duckdb"
    with Ledger.open(path) as opened:
        two_closes(opened)
        assert verify(opened).ok
    con = duckdb.connect(str(path))  # an intruder with the file, not the ledger's API
    con.execute("UPDATE member_statements SET payable = 7.88, carry_out = 0"
                " WHERE member_id = 'm-finn' AND period = '2026-04'")
    con.close()
    with Ledger.open(path) as opened:
        problems = verify(opened).problems
    assert any("m-finn of cmo-duo" in p and "summary differs from its stored totals" in p for p in problems)
    assert any("m-finn of cmo-duo" in p and "carry in 7.875" in p for p in problems)


def test_two_ledgers_of_the_same_log_sign_the_same_member_statements(tmp_path):
    signed = []
    for name in ("one", "two"):
        with Ledger.open(tmp_path / f"{name}.duckdb") as opened:
            two_closes(opened)
            signed.append([(m.statement_id, m.document, m.content_hash, m.signature) for m in opened.member_statements()])
    assert signed[0] == signed[1] and len(signed[0]) == 4

