"""Consent that ends: a revocation in the middle of a month, worked through two closes.

The book (BOOK below), platform ``orbit``:

  h-ann   src-novels  lic-novels  USD, any platform, from 2026-01-01: training 1.00 per 1M tokens, inference 0.002
  h-bah   src-poems   lic-poems   BHD, any platform: training 0.010 per 1,000 tokens, inference 0.0125
  agr-orbit: model royalty 10% of revenue

April 2026 (the records are read in this order):

  t1 04-05 orbit-base src-novels 600,000 tokens   priced: USD 0.60
  t3 04-10 orbit-base src-poems  200,000 tokens   priced: BHD 2.000
     04-10 h-ann revokes src-novels for every platform from 04-15 (asked on 04-10)
  t2 04-20 orbit-base src-novels 900,000 tokens   unlicensed: booked, not priced
  i1 04-25 novels 0.5 (unlicensed), poems 0.5 (priced: BHD 0.00625)

May 2026: r1, revenue of orbit-base USD 1,000.00. orbit-base was trained on novels 600,000
(priced, before the revocation) and poems 200,000: shares 0.75 and 0.25; t2 adds nothing.
Royalty 10% = 100.00 -> novels 75.00 (h-ann keeps being paid), poems 25.00.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from consumers.batch import RawRecord, build_batch
from ledger.core.dsr import render_dsr
from ledger.core.statements import render_csv
from ledger.core.usage import Attribution, InferenceUsage, RevenueReport, TrainingUsage
from ledger.services.close import close_period, usage_report_files
from ledger.services.consent import RevocationError, UnknownRevocationSourceError, revoke_source
from ledger.storage.store import Ledger
from producers.encoding import encode_event
from schemas import default_catalog
from tests.ledger.keys import SIGNER

BOOK = """
format = 1

[[holders]]
id = "h-ann"
name = "Ann Writes"

[[holders]]
id = "h-bah"
name = "Bahrain Archive"

[[sources]]
id = "src-novels"
holder = "h-ann"

[[sources]]
id = "src-poems"
holder = "h-bah"

[[licenses]]
id = "lic-novels"
source = "src-novels"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
training = { rate = 1.00, per = 1000000, unit = "tokens" }
inference = { rate = 0.002 }

[[licenses]]
id = "lic-poems"
source = "src-poems"
effective_from = 2026-01-01T00:00:00Z
currency = "BHD"
training = { rate = 0.010, per = 1000, unit = "tokens" }
inference = { rate = 0.0125 }

[[agreements]]
id = "agr-orbit"
platform = "orbit"
effective_from = 2026-01-01T00:00:00Z
model_royalty = { percent = 10 }
"""

CATALOG = default_catalog()


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=timezone.utc)


def training(event_id, when, source, units):
    return TrainingUsage(event_id=event_id, platform_id="orbit", model_id="orbit-base", run_id="run",
                         source_id=source, units=units, unit="tokens", occurred_at=when)


def book(ledger: Ledger, events, first_offset: int):
    """Builds and appends the records of ``events`` as the consumer would (build_batch, then one transaction)."""
    records = [RawRecord(topic="usage", partition=0, offset=first_offset + n,
                         timestamp=int(event.occurred_at.timestamp() * 1000), key=None,
                         value=encode_event(event, CATALOG)) for n, event in enumerate(events)]
    batch = build_batch(records, ledger.load_book(), ledger, CATALOG)
    assert batch.quarantined == ()
    ledger.append_batch(batch)
    return batch


@pytest.fixture()
def revoked_ledger(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        book(ledger, [training("t1", at(4, 5), "src-novels", 600_000), training("t3", at(4, 10), "src-poems", 200_000)], 0)
        revoke_source(ledger, source_id="src-novels", effective_at=at(4, 15), reason="no longer consents to AI use",
                      by="holder:h-ann", holder_id="h-ann", now=at(4, 10),
                      evidence_url="https://ann.example/rsl.xml", evidence_sha256="ab" * 32)
        answer = InferenceUsage(event_id="i1", platform_id="orbit", model_id="orbit-base", request_id="q1",
                                occurred_at=at(4, 25), attributions=(
                                    Attribution(source_id="src-novels", weight=Decimal("0.5")),
                                    Attribution(source_id="src-poems", weight=Decimal("0.5"))))
        late = book(ledger, [training("t2", at(4, 20), "src-novels", 900_000), answer], 2)
        yield ledger, late


def statements(ledger: Ledger, period: str) -> dict[tuple[str, str], dict]:
    return {(r.holder_id, r.currency): json.loads(ledger.statement_document(r.statement_id).document)
            for r in ledger.statement_rows(period=period)}


def test_usage_before_a_mid_month_revocation_is_priced_and_after_it_listed_as_unlicensed(revoked_ledger):
    ledger, late = revoked_ledger
    assert [(u.event_id, u.line, u.kind, u.quantity, u.reason) for u in late.unlicensed] == [
        ("t2", 0, "training", Decimal(900_000), "revoked"), ("i1", 0, "inference", Decimal("0.5"), "revoked")]
    assert [(a.event_id, a.line, a.source_id) for a in late.accruals] == [("i1", 1, "src-poems")]

    close_period(ledger, "2026-04", now=at(5, 2), signer=SIGNER)
    april = statements(ledger, "2026-04")
    ann = april[("h-ann", "USD")]
    assert [(l["source_id"], l["quantity"], l["amount"]) for l in ann["lines"]] == [
        ("src-novels", "600000.000000000000", "0.600000000000")]
    assert ann["summary"]["payable"] == "0.60"
    revocation_id = ledger.load_book().revocations[0].revocation_id
    assert ann["unlicensed_use"] == [
        {"period": "2026-04", "source_id": "src-novels", "platform_id": "orbit", "model_id": "orbit-base",
         "kind": "inference", "unit": "answer", "quantity": "0.500000000000", "events": 1, "reason": "revoked",
         "license": "lic-novels v1", "revocation_id": revocation_id},
        {"period": "2026-04", "source_id": "src-novels", "platform_id": "orbit", "model_id": "orbit-base",
         "kind": "training", "unit": "tokens", "quantity": "900000.000000000000", "events": 1, "reason": "revoked",
         "license": "lic-novels v1", "revocation_id": revocation_id}]
    assert "unlicensed_use" not in april[("h-bah", "BHD")]  # absent, not empty: bytes as before
    assert b"unlicensed_training" in render_csv(ann)

    (report,) = usage_report_files(ledger, "2026-04")
    body = report.render().decode()
    unlicensed = [line.split("\t") for line in body.splitlines() if line.startswith("UL01")]
    assert [(row[5], row[6], row[8], row[10]) for row in unlicensed] == [
        ("orbit-base", "inference", "0.500000000000", "1"), ("orbit-base", "training", "900000.000000000000", "1")]
    # head, 3 summaries (BHD inference and training, USD training), 3 details, 2 unlicensed, foot
    assert body.splitlines()[-1].split("\t")[1] == str(1 + 3 + 3 + 2 + 1)


def test_the_model_royalty_of_a_model_trained_before_the_revocation_keeps_flowing(revoked_ledger):
    ledger, _ = revoked_ledger
    revenue = RevenueReport(event_id="r1", platform_id="orbit", model_id="orbit-base", period="2026-05",
                            revenue=Decimal("1000.00"), currency="USD", occurred_at=at(5, 31))
    book(ledger, [revenue], 4)
    close_period(ledger, "2026-05", now=at(6, 2), signer=SIGNER)
    may = statements(ledger, "2026-05")
    royalties = {(l["source_id"], l["amount"]) for d in may.values() for l in d["lines"] if l["kind"] == "model_royalty"}
    assert royalties == {("src-novels", "75.000000000000"), ("src-poems", "25.000000000000")}
    assert "unlicensed_use" not in may[("h-ann", "USD")]  # April's were listed by April's close


def test_a_revocation_is_refused_in_the_past_and_for_another_holders_source(revoked_ledger):
    ledger, _ = revoked_ledger
    with pytest.raises(RevocationError, match="may not be in the past"):
        revoke_source(ledger, source_id="src-novels", effective_at=at(4, 1), reason="r", by="operator",
                      now=at(4, 10))
    with pytest.raises(UnknownRevocationSourceError) as foreign:
        revoke_source(ledger, source_id="src-poems", effective_at=at(6, 1), reason="r", by="holder:h-ann",
                      holder_id="h-ann", now=at(4, 10))
    with pytest.raises(UnknownRevocationSourceError) as unknown:
        revoke_source(ledger, source_id="src-nothing", effective_at=at(6, 1), reason="r", by="holder:h-ann",
                      holder_id="h-ann", now=at(4, 10))
    assert str(foreign.value).replace("src-poems", "X") == str(unknown.value).replace("src-nothing", "X")


def test_revocations_are_committed_by_the_book_hash_and_applied_once(revoked_ledger):
    ledger, _ = revoked_ledger
    before = ledger.book_hash()
    again = revoke_source(ledger, source_id="src-novels", effective_at=at(4, 15), reason="no longer consents to AI use",
                          by="holder:h-ann", holder_id="h-ann", now=at(4, 10),
                          evidence_url="https://ann.example/rsl.xml", evidence_sha256="ab" * 32)
    assert ledger.book_hash() == before and len(ledger.load_book().revocations) == 1
    revoke_source(ledger, source_id="src-novels", platform_id="orbit", effective_at=at(7, 1), reason="also orbit",
                  by="operator", now=at(4, 10))
    assert ledger.book_hash() != before
    assert again.evidence_sha256 == "ab" * 32


def test_the_pdf_statement_lists_unlicensed_use_only_when_there_is_some(revoked_ledger, tmp_path):
    from ledger.services.close import statement_pdf
    from tests.ledger.core.test_pdf import flat, pages

    ledger, _ = revoked_ledger
    close_period(ledger, "2026-04", now=at(5, 2), signer=SIGNER)
    ids = {(r.holder_id, r.currency): r.statement_id for r in ledger.statement_rows(period="2026-04")}
    ann, _ = pages(statement_pdf(ledger, ids[("h-ann", "USD")]), tmp_path, "ann")
    bah, _ = pages(statement_pdf(ledger, ids[("h-bah", "BHD")]), tmp_path, "bah")
    assert "Unlicensed use (not priced)" in flat(" ".join(ann)) and "900,000 tokens" in flat(" ".join(ann))
    assert "Unlicensed use" not in flat(" ".join(bah))


def test_a_correction_of_an_unlicensed_event_is_refused_with_its_reason_not_left_pending(revoked_ledger):
    from ledger.core.usage import UsageCorrection

    ledger, _ = revoked_ledger
    void = UsageCorrection(event_id="c1", platform_id="orbit", corrects_event_id="t2", action="VOID",
                           occurred_at=at(4, 26), reason="duplicate run")
    record = RawRecord(topic="usage", partition=0, offset=9, timestamp=int(at(4, 26).timestamp() * 1000), key=None,
                       value=encode_event(void, CATALOG))
    (refused,) = build_batch([record], ledger.load_book(), ledger, CATALOG).quarantined
    assert refused.error_code == "correction_invalid"  # terminal: not retried at every close as a pending one is
    assert "booked without priced entries (unlicensed use" in refused.reason
