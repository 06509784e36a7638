"""Per-platform usage reports: header, summaries, details, footer whose counts and totals add up."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from decimal import Decimal

from ledger.core.dsr import render_dsr
from ledger.core.statements import to_document
from ledger.services.close import close_period, write_period_files
from ledger.storage.store import Ledger
from tests.ledger.core.test_statements import ROOT, april_statement
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_golden_book import BOOK, NOW, ingest
from tests.ledger.storage.test_store import batch_of


def records(path) -> dict[str, list[dict]]:
    """Records by type, each as a dict keyed by the column names of its ``#`` line."""
    found: dict[str, list[dict]] = {}
    columns: list[str] = []
    for row in csv.reader(path.read_text().splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row[0].startswith("#"):
            columns = [row[0][1:], *row[1:]]
            continue
        assert len(row) == len(columns), row
        found.setdefault(row[0], []).append(dict(zip(columns, row)))
    return found


def test_the_report_of_a_platform_reconciles_with_its_statements(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "golden-book.toml")
        ingest(ledger)
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        files = write_period_files(ledger, "2026-04", tmp_path / "out")
        accrued = {(row.holder_id, row.currency): row.accrued for row in ledger.statement_rows(period="2026-04")}
    assert tmp_path / "out" / "2026-04_orbit.dsr.tsv" in files
    report = records(tmp_path / "out" / "2026-04_orbit.dsr.tsv")
    (head,) = report["HEAD"]
    assert (head["UsagePeriod"], head["UsageStartDate"], head["UsageEndDate"], head["RecipientPartyId"]) == (
        "2026-04", "2026-04-01", "2026-04-30", "orbit")
    details, summaries = report["RU01"], report["SY01"]
    (foot,) = report["FOOT"]
    assert int(foot["NumberOfDetailRecords"]) == len(details) == 20
    assert int(foot["NumberOfSummaryRecords"]) == len(summaries)
    assert int(foot["NumberOfRecordsInFile"]) == 1 + len(summaries) + len(details) + 1
    for summary in summaries:
        mine = [d for d in details if d["SummaryRecordId"] == summary["SummaryRecordId"]]
        assert len(mine) == int(summary["NumberOfDetailRecords"])
        assert sum(Decimal(d["Amount"]) for d in mine) == Decimal(summary["TotalAmount"])
    # All of this book's usage is on orbit: the details of each holder sum to the statement's accrued.
    for (holder, currency), amount in accrued.items():
        assert sum(Decimal(d["Amount"]) for d in details
                   if (d["RightsHolderId"], d["Currency"]) == (holder, currency)) == amount
    assert "USD:211.9032" in foot["TotalAmountPerCurrency"].replace("00000000", "")
    tier = next(d for d in details if d["UsageKind"] == "tier_adjustment")
    assert "graduated tiers" in tier["Description"] and Decimal(tier["Amount"]) == Decimal("-0.5")
    assert all("E" not in d["Quantity"] for d in details)


def test_a_prior_period_adjustment_is_flagged_with_its_month(tmp_path, license_book_text):
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(license_book_text, "book.toml")
        book = ledger.load_book()
        ledger.append_batch(batch_of(book, [1_000_000]))
        close_period(ledger, "2026-04", now=now, signer=SIGNER)
        ledger.append_batch(batch_of(book, [2_000_000], first=1, offset=1))
        ledger.append_batch(batch_of(book, [1_000_000], first=2, offset=2, when=datetime(2026, 5, 3, tzinfo=timezone.utc)))
        close_period(ledger, "2026-05", now=now, signer=SIGNER)
        write_period_files(ledger, "2026-05", tmp_path)
    details = records(tmp_path / "2026-05_p.dsr.tsv")["RU01"]
    assert sorted((d["UsagePeriod"], d["PriorPeriodAdjustment"], d["Amount"]) for d in details) == [
        ("2026-04", "Y", "2.400000000000"), ("2026-05", "N", "1.200000000000")]


def test_the_message_id_ends_in_the_close_root_so_a_rebuild_names_the_same_message():
    report = render_dsr(period="2026-04", platform_id="orbit", documents=[to_document(april_statement())],
                        created_at=datetime(2026, 5, 3, tzinfo=timezone.utc), close_root=ROOT)
    lines = report.body.decode().splitlines()
    head = dict(zip(lines[0][1:].split("\t"), lines[1].split("\t")))
    assert head["MessageId"] == f"2026-04-orbit-{ROOT[:16]}"
    assert report.detail_records == 1
