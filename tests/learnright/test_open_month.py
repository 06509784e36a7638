"""The open months: accruals booked since the last close, per source, provisional and unsigned.

The book (tests/learnright/books.py) closes Feb, Mar and Apr 2026. Then, booked without a broker:

    2026-04-28  h-ann  training 1M tokens    (late: April is closed, so it waits for May's statement
                                              as a prior-period adjustment and is not an open month)
    2026-05-10  h-ann  training 2.5M tokens at 1.20 / 1M       = 3.00 USD
    2026-05-11  answer: src-novels 0.7 x 0.003 USD             = 0.0021 USD
                        src-photos 0.3 x 1 JPY                 = 0.3 JPY
    2026-06-01  h-bo   training 4 items at 5 JPY               = 20 JPY

So May and June are open; h-ann sees 3.0021 USD for May (two kinds of use of one source)
and nothing for June.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from ground.metrics import Metrics
from ground.settings import Settings
from learnright.api import create_app
from ledger.core.pricing import price
from ledger.core.records import EventRow, IngestBatch
from ledger.core.usage import Attribution, InferenceUsage, TrainingUsage
from ledger.services.tokens import AUDITOR, HOLDER, create_token
from ledger.storage.store import Ledger
from tests.learnright.books import book_two_holders

T0 = datetime(2026, 6, 2, tzinfo=timezone.utc)


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=timezone.utc)


def book_open_months(ledger: Ledger) -> None:
    book = ledger.load_book()
    offset = 1000
    events = (
        TrainingUsage(event_id="late", platform_id="p", model_id="m", run_id="r", source_id="src-novels",
                      units=1_000_000, unit="tokens", occurred_at=at(4, 28)),
        TrainingUsage(event_id="may-t", platform_id="p", model_id="m", run_id="r", source_id="src-novels",
                      units=2_500_000, unit="tokens", occurred_at=at(5, 10)),
        InferenceUsage(event_id="may-i", platform_id="p", model_id="m", request_id="q", occurred_at=at(5, 11),
                       attributions=(Attribution(source_id="src-novels", weight=Decimal("0.7")),
                                     Attribution(source_id="src-photos", weight=Decimal("0.3")))),
        TrainingUsage(event_id="jun-t", platform_id="p", model_id="m", run_id="r", source_id="src-photos",
                      units=4, unit="items", occurred_at=at(6, 1)),
    )
    rows, accruals = [], []
    for event in events:
        accruals.extend(replace(a, stream="t/0", position=offset) for a in price(event, book))
        rows.append(EventRow(platform_id="p", event_id=event.event_id, event_type=type(event).__name__,
                             content_hash=f"h{offset}", model_id="m", occurred_at=event.occurred_at,
                             period=event.occurred_at.strftime("%Y-%m"), topic="t", partition=0, offset=offset))
        offset += 1
    ledger.append_batch(IngestBatch(events=tuple(rows), accruals=tuple(accruals), offsets={("t", 0): offset}))


@pytest.fixture
def served(tmp_path, license_book_text):
    path = book_two_holders(tmp_path / "ledger.duckdb", license_book_text)
    settings = Settings().model_copy(update={"db": path, "snapshots_dir": tmp_path / "snapshots",
                                             "signing_key": tmp_path / "no-key.pem"})
    with Ledger.open(path) as ledger:
        book_open_months(ledger)
        tokens = {
            "ann": create_token(ledger, role=HOLDER, holder_id="h-ann", now=T0).token,
            "bo": create_token(ledger, role=HOLDER, holder_id="h-bo", now=T0).token,
            "auditor": create_token(ledger, role=AUDITOR, holder_id=None, now=T0).token,
        }
        app = create_app(ledger=ledger, settings=settings, metrics=Metrics(), now=lambda: T0)
        with TestClient(app) as client:
            yield client, tokens, ledger


def get(client, token, query=""):
    return client.get(f"/v1/royalties/open{query}", headers={"Authorization": f"Bearer {token}"})


def test_the_port_reads_open_months_only_with_the_cut_of_the_same_read(served):
    _, _, ledger = served
    found = ledger.open_accruals()
    assert found.after_period == "2026-04"
    assert [(r.period, r.holder_id, r.source_id, r.kind, r.quantity, r.amount, r.entries) for r in found.rows] == [
        ("2026-05", "h-ann", "src-novels", "inference", Decimal("0.7"), Decimal("0.0021"), 1),
        ("2026-05", "h-ann", "src-novels", "training", Decimal(2_500_000), Decimal("3"), 1),
        ("2026-05", "h-bo", "src-photos", "inference", Decimal("0.3"), Decimal("0.3"), 1),
        ("2026-06", "h-bo", "src-photos", "training", Decimal(4), Decimal(20), 1),
    ]
    assert found.offsets == {("t", 0): 1004}
    assert found.last_entry_id == ledger.last_entry_id
    assert found.last_batch_at is not None
    assert [r.period for r in ledger.open_accruals("h-ann").rows] == ["2026-05", "2026-05"]


def test_a_holder_sees_its_open_month_per_source_provisional_and_unsigned(served):
    client, tokens, ledger = served
    answer = get(client, tokens["ann"])
    assert answer.status_code == 200
    body = answer.json()
    assert body["provisional"] is True and body["signed"] is False
    assert "signature" not in answer.text
    assert body["holder_id"] == "h-ann" and body["after_period"] == "2026-04"
    assert body["cut"]["last_entry_id"] == ledger.last_entry_id
    assert body["cut"]["offsets"] == [{"topic": "t", "partition": 0, "next_offset": 1004}]
    # April's late entry is not shown (April is closed); June has nothing of h-ann's.
    assert body["months"] == [{
        "period": "2026-05", "provisional": True,
        "totals": [{"currency": "USD", "amount": "3.002100000000"}],
        "sources": [{"holder_id": "h-ann", "currency": "USD", "source_id": "src-novels",
                     "amount": "3.002100000000", "entries": 2, "quantities": [
                         {"kind": "inference", "unit": "answer", "quantity": "0.700000000000",
                          "amount": "0.002100000000", "entries": 1},
                         {"kind": "training", "unit": "tokens", "quantity": "2500000.000000000000",
                          "amount": "3.000000000000", "entries": 1}]}],
    }]


def test_holders_are_kept_apart_and_auditors_see_all_or_one(served):
    client, tokens, _ = served
    bo = get(client, tokens["bo"]).json()
    assert [(m["period"], m["totals"]) for m in bo["months"]] == [
        ("2026-05", [{"currency": "JPY", "amount": "0.300000000000"}]),
        ("2026-06", [{"currency": "JPY", "amount": "20.000000000000"}])]
    refused = get(client, tokens["ann"], "?holder=h-bo")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert get(client, tokens["ann"], "?holder=h-ann").json() == get(client, tokens["ann"]).json()
    every = get(client, tokens["auditor"]).json()
    assert every["holder_id"] is None
    assert [(m["period"], [(s["holder_id"], s["currency"], s["amount"]) for s in m["sources"]])
            for m in every["months"]] == [
        ("2026-05", [("h-ann", "USD", "3.002100000000"), ("h-bo", "JPY", "0.300000000000")]),
        ("2026-06", [("h-bo", "JPY", "20.000000000000")])]
    one = get(client, tokens["auditor"], "?holder=h-bo").json()
    assert one["holder_id"] == "h-bo" and one["months"] == bo["months"]
    assert get(client, "lr.nope.nope").status_code == 401
