"""A worked example: one month of a small book, every pricing term, statements by hand.

The book (BOOK below), platform ``orbit``, April 2026:

  holders   h-ann (USD and EUR), h-kei (JPY; payout minimum USD 50), h-bah (BHD)
  sources   src-novels (h-ann), src-essays (h-ann), src-manga (h-kei), src-poems (h-bah)
  licenses  lic-novels  USD, any platform, pool = true
              v1 from 2026-01-01: training 1.00 per 1M tokens, tiers 1.00 up to 1M then 0.50; inference 0.002
              v2 from 2026-04-16 (mid-month): training 2.00 per 1M, tiers 2.00 up to 1M then 1.00; inference 0.004
            lic-essays  EUR, orbit only: training 0.50 per 1,000 words, minimum EUR 20 a month
            lic-manga   JPY, any platform, pool = true: training 2 per page, inference 3
            lic-poems   BHD, any platform: training 0.010 per 1,000 tokens, inference 0.0125
  agreement agr-orbit: pool 5% of revenue, model royalty 10% of revenue, fine-tunes inherit 0.5

Usage and revenue (all on orbit):

  t1 04-05 orbit-base  src-novels 600,000 tokens  v1: 600,000 x 1.00/1M      = USD 0.60
  t2 04-20 orbit-base  src-novels 900,000 tokens  v2: 900,000 x 2.00/1M      = USD 1.80
  t3 04-10 orbit-base  src-poems  500,000 tokens  500,000 x 0.010/1000       = BHD 5.000
  t4 04-12 orbit-legal src-essays  10,000 words   (fine-tune of orbit-base)  = EUR 5.00
  t5 04-08 orbit-vision src-manga     100 pages   100 x 2                    = JPY 200
  i1 04-03 novels 0.6 (v1: 0.0012 USD), manga 0.4 (1.2 JPY)
  i2 04-18 novels 0.5 (v2: 0.002 USD), poems 0.5 (0.00625 BHD)
  i3 04-25 manga 1.0 (3 JPY)
  r1 revenue of orbit-base  for 2026-04: USD 1,000.00
  r2 revenue of orbit-legal for 2026-04: USD   400.00

Period terms at the close of 2026-04:

  tiers     novels volume: v1 takes 0..600,000, all in tier 1 (no adjustment);
            v2 takes 600,000..1,500,000: 400,000 x 2.00/1M + 500,000 x 1.00/1M = 1.30,
            accrued 1.80 -> tier adjustment USD -0.50
  minimum   essays earned EUR 5.00 < 20 -> top-up EUR 15.00 (credited to src-essays)
  pool      members with pool = true: novels (weight 0.6 + 0.5 = 1.1), manga (0.4 + 1.0 = 1.4); 2.5 in all
            r1: 5% = 50.00 -> novels 22.00, manga 28.00;  r2: 5% = 20.00 -> novels 8.80, manga 11.20
  royalty   orbit-base composition: novels 1,500,000 / 2,000,000 = 0.75, poems 0.25
            r1: 10% = 100.00 -> novels 75.00, poems 25.00
            orbit-legal: own essays 1.0; share = 0.5 x own + 0.5 x orbit-base
                         -> essays 0.5, novels 0.375, poems 0.125
            r2: 10% = 40.00 -> essays 20.00, novels 15.00, poems 5.00

Statements (rounded once, half-even; the rest carried):

  h-ann USD  0.60 + 1.80 - 0.50 + 0.0012 + 0.002 + 22.00 + 8.80 + 75.00 + 15.00 = 122.7032
             + essays' royalty 20.00 = 142.7032 -> pay 142.70, carry 0.0032
  h-ann EUR  5.00 + 15.00 = 20.00 -> pay 20.00
  h-kei JPY  200 + 1.2 + 3 = 204.2 -> pay 204, carry 0.2
  h-kei USD  28.00 + 11.20 = 39.20, under the payout minimum of 50 -> pay 0, carry 39.20
  h-bah BHD  5.000 + 0.00625 = 5.00625 -> pay 5.006 (half-even), carry 0.00025
  h-bah USD  25.00 + 5.00 = 30.00 -> pay 30.00

Set LEARNRIGHT_UPDATE_GOLDEN=1 to rewrite the golden statement files after a deliberate change.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from ledger.services.close import close_period
from ledger.core.pricing import price
from ledger.core.records import EventRow, IngestBatch, ModelLineage
from ledger.storage.store import Ledger
from ledger.core.usage import Attribution, InferenceUsage, RevenueReport, TrainingUsage
from ledger.services.verify import verify
from tests.ledger.keys import SIGNER

GOLDEN = Path(__file__).parents[1] / "golden"
NOW = datetime(2026, 5, 2, tzinfo=timezone.utc)

BOOK = """
format = 1

[[holders]]
id = "h-ann"
name = "Ann Writes"

[[holders]]
id = "h-kei"
name = "Kei Studio"
payout_minimum = { USD = 50 }

[[holders]]
id = "h-bah"
name = "Bahrain Archive"

[[sources]]
id = "src-novels"
holder = "h-ann"

[[sources]]
id = "src-essays"
holder = "h-ann"

[[sources]]
id = "src-manga"
holder = "h-kei"

[[sources]]
id = "src-poems"
holder = "h-bah"

[[licenses]]
id = "lic-novels"
version = 1
source = "src-novels"
effective_from = 2026-01-01T00:00:00Z
currency = "USD"
pool = true
training = { rate = 1.00, per = 1000000, unit = "tokens", tiers = [
  { up_to = 1000000, rate = 1.00 },
  { rate = 0.50 },
] }
inference = { rate = 0.002 }

[[licenses]]
id = "lic-novels"
version = 2
source = "src-novels"
effective_from = 2026-04-16T00:00:00Z
currency = "USD"
pool = true
training = { rate = 2.00, per = 1000000, unit = "tokens", tiers = [
  { up_to = 1000000, rate = 2.00 },
  { rate = 1.00 },
] }
inference = { rate = 0.004 }

[[licenses]]
id = "lic-essays"
source = "src-essays"
platform = "orbit"
effective_from = 2026-01-01T00:00:00Z
currency = "EUR"
training = { rate = 0.50, per = 1000, unit = "words" }
minimum = { monthly = 20 }

[[licenses]]
id = "lic-manga"
source = "src-manga"
effective_from = 2026-01-01T00:00:00Z
currency = "JPY"
pool = true
training = { rate = 2, per = 1, unit = "pages" }
inference = { rate = 3 }

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
pool = { percent = 5 }
model_royalty = { percent = 10, inherit = 0.5 }
"""


def day(d: int) -> datetime:
    return datetime(2026, 4, d, 12, tzinfo=timezone.utc)


def training(event_id, when, model, source, units, unit, base=None):
    return TrainingUsage(event_id=event_id, platform_id="orbit", model_id=model, run_id="run", source_id=source,
                         units=units, unit=unit, occurred_at=when, base_model_id=base)


def inference(event_id, when, **weights):
    return InferenceUsage(
        event_id=event_id, platform_id="orbit", model_id="orbit-base", request_id=event_id, occurred_at=when,
        attributions=tuple(Attribution(source_id=f"src-{s}", weight=Decimal(w)) for s, w in weights.items()),
    )


def revenue(event_id, model, amount):
    return RevenueReport(event_id=event_id, platform_id="orbit", model_id=model, period="2026-04",
                         revenue=Decimal(amount), currency="USD", occurred_at=datetime(2026, 5, 1, 9, tzinfo=timezone.utc))


USAGE = (
    training("t1", day(5), "orbit-base", "src-novels", 600_000, "tokens"),
    training("t2", day(20), "orbit-base", "src-novels", 900_000, "tokens"),
    training("t3", day(10), "orbit-base", "src-poems", 500_000, "tokens"),
    training("t4", day(12), "orbit-legal", "src-essays", 10_000, "words", base="orbit-base"),
    training("t5", day(8), "orbit-vision", "src-manga", 100, "pages"),
    inference("i1", day(3), novels="0.6", manga="0.4"),
    inference("i2", day(18), novels="0.5", poems="0.5"),
    inference("i3", day(25), manga="1.0"),
)
REVENUE = (revenue("r1", "orbit-base", "1000.00"), revenue("r2", "orbit-legal", "400.00"))


def ingest(ledger: Ledger) -> None:
    book = ledger.load_book()
    accruals, rows = [], []
    for offset, event in enumerate(USAGE + REVENUE):
        if not isinstance(event, RevenueReport):
            accruals.extend(replace(a, stream="usage/0", position=offset) for a in price(event, book))
        rows.append(EventRow(platform_id="orbit", event_id=event.event_id, event_type=type(event).__name__,
                             content_hash=f"hash-{event.event_id}", model_id=event.model_id,
                             occurred_at=event.occurred_at, period=event.occurred_at.strftime("%Y-%m"),
                             topic="usage", partition=0, offset=offset))
    ledger.append_batch(IngestBatch(
        events=tuple(rows), accruals=tuple(accruals),
        revenues=tuple((r, 10 + n) for n, r in enumerate(REVENUE)),
        lineage=tuple(ModelLineage(platform_id=e.platform_id, model_id=e.model_id, base_model_id=e.base_model_id,
                                   event_id=e.event_id, occurred_at=e.occurred_at)
                      for e in USAGE if isinstance(e, TrainingUsage) and e.base_model_id),
        offsets={("usage", 0): len(rows)},
    ))


@pytest.fixture
def book_ledger(tmp_path):
    with Ledger.open(tmp_path / "ledger.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "golden-book.toml")
        ingest(ledger)
        yield ledger


def documents(ledger: Ledger, period: str) -> dict[str, str]:
    return {
        f"{period}_{row.holder_id}_{row.currency}": ledger.statement_document(row.statement_id).document
        for row in ledger.statement_rows(period=period)
    }


def summaries(ledger: Ledger, period: str) -> dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]:
    return {(row.holder_id, row.currency): (row.accrued, row.payable, row.carry_out)
            for row in ledger.statement_rows(period=period)}


def test_statements_match_the_hand_computation(book_ledger):
    close_period(book_ledger, "2026-04", now=NOW, signer=SIGNER)
    assert summaries(book_ledger, "2026-04") == {
        ("h-ann", "EUR"): (Decimal("20"), Decimal("20.00"), Decimal("0")),
        ("h-ann", "USD"): (Decimal("142.7032"), Decimal("142.70"), Decimal("0.0032")),
        ("h-bah", "BHD"): (Decimal("5.00625"), Decimal("5.006"), Decimal("0.00025")),
        ("h-bah", "USD"): (Decimal("30"), Decimal("30.00"), Decimal("0")),
        ("h-kei", "JPY"): (Decimal("204.2"), Decimal("204"), Decimal("0.2")),
        ("h-kei", "USD"): (Decimal("39.2"), Decimal("0"), Decimal("39.2")),
    }


def test_every_period_term_is_a_line_that_says_how_it_was_computed(book_ledger):
    close_period(book_ledger, "2026-04", now=NOW, signer=SIGNER)
    ann = json.loads(documents(book_ledger, "2026-04")["2026-04_h-ann_USD"])
    by_kind = {}
    for line in ann["lines"]:
        by_kind.setdefault(line["kind"], []).append((line["amount"], line["description"]))
    (tier,) = by_kind["tier_adjustment"]
    assert Decimal(tier[0]) == Decimal("-0.5")
    assert "400,000 at 2 + 500,000 at 1 per 1,000,000 = USD 1.30; accrued at the first tier USD 1.80" in tier[1]
    assert sorted(Decimal(a) for a, _ in by_kind["pool_share"]) == [Decimal("8.8"), Decimal("22")]
    assert any("5% of USD 1,000.00 revenue of model orbit-base (report r1, 2026-04) = USD 50.00, split by"
               " inference weight 1.1 of 2.5" in d for _, d in by_kind["pool_share"])
    royalties = {(l["source_id"], l["model_id"]): Decimal(l["amount"]) for l in ann["lines"] if l["kind"] == "model_royalty"}
    assert royalties == {("src-novels", "orbit-base"): Decimal("75"), ("src-novels", "orbit-legal"): Decimal("15"),
                         ("src-essays", "orbit-legal"): Decimal("20")}
    assert any("dataset share 0.375 = (1 - 0.5) x own 0 + 0.5 x base orbit-base 0.75" in d
               for _, d in by_kind["model_royalty"])
    eur = json.loads(documents(book_ledger, "2026-04")["2026-04_h-ann_EUR"])
    (topup,) = [l for l in eur["lines"] if l["kind"] == "minimum_topup"]
    assert Decimal(topup["amount"]) == Decimal(15) and "top-up EUR 15.00" in topup["description"]


def test_statement_documents_are_golden(book_ledger):
    close_period(book_ledger, "2026-04", now=NOW, signer=SIGNER)
    produced = documents(book_ledger, "2026-04")
    if os.environ.get("LEARNRIGHT_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for name, document in produced.items():
            (GOLDEN / f"{name}.json").write_text(document)
    expected = {path.stem: path.read_text() for path in GOLDEN.glob("2026-04_*.json")}
    assert produced == expected


@pytest.mark.parametrize("range_lines", [1, 3, 1000])
def test_statements_built_by_worker_processes_are_the_golden_documents(book_ledger, monkeypatch, range_lines):
    """Two worker processes build, render and sign the statements a few lines of a range at a time (the
    period lines, top-ups and royalties merged in by key) and store exactly the golden bytes."""
    monkeypatch.setattr("ledger.storage.closes.RANGE_LINES", range_lines)
    outcome = close_period(book_ledger, "2026-04", now=NOW, signer=SIGNER, workers=2)
    expected = {path.stem: path.read_text() for path in GOLDEN.glob("2026-04_*.json")}
    assert documents(book_ledger, "2026-04") == expected and len(outcome.statement_ids) == len(expected)
    assert verify(book_ledger).ok


def test_period_lines_are_keyed_in_the_close_stream_committed_to_and_the_ledger_verifies(book_ledger):
    before = book_ledger.last_entry_id
    usage_entries = book_ledger.scalar("SELECT count(*) FROM accruals")
    close_period(book_ledger, "2026-04", now=NOW, signer=SIGNER)
    kinds = book_ledger.query(
        "SELECT kind, count(*) FROM accruals WHERE entry_id > ? GROUP BY kind ORDER BY kind", [before])
    assert kinds == [("minimum_topup", 1), ("model_royalty", 5), ("pool_share", 4), ("tier_adjustment", 1)]
    keys = book_ledger.query("SELECT stream, position FROM accruals WHERE entry_id > ? ORDER BY entry_id", [before])
    assert keys == [("close/2026-04", n) for n in range(11)]  # the n-th period line of the close
    close = book_ledger.get_close("2026-04")
    assert close.last_entry_id == book_ledger.last_entry_id
    heads = book_ledger.close_streams("2026-04")
    assert {s: h.entries for s, h in heads.items()} == {"usage/0": usage_entries, "close/2026-04": 11}
    assert book_ledger.close_cutoff("2026-04") == {("usage", 0): len(USAGE + REVENUE)}
    report = verify(book_ledger)
    assert report.ok, report.problems
    assert report.root == close.root
    assert {json.loads(d)["ledger"]["close_root"] for d in documents(book_ledger, "2026-04").values()} == {close.root}


def tamper(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    """Writes ``sql`` into a closed ledger file on a raw DuckDB connection, as an attacker or a bug could.

    The ledger offers no way to do it (it is append-only; ``Ledger.query`` only reads).
    """
    con = duckdb.connect(str(path))
    try:
        con.execute(sql, list(params))
    finally:
        con.close()


def test_a_close_that_rolled_back_gives_the_same_statements_when_run_again(book_ledger, tmp_path):
    path, reference_path = book_ledger.path, tmp_path / "reference.duckdb"
    book_ledger.close()  # checkpointed and released: the file can be copied and tampered with
    shutil.copy(path, reference_path)
    with Ledger.open(reference_path) as reference:
        close_period(reference, "2026-04", now=NOW, signer=SIGNER)
        expected = (reference.statement_rows(period="2026-04"), documents(reference, "2026-04"),
                    reference.get_close("2026-04").root)
    # Tampering: a row in the way of the close's statements makes its transaction fail and roll back.
    blocking_id = expected[0][0].statement_id
    tamper(path, "INSERT INTO statements SELECT ?, '0000-00', 'x', 'USD', 2, 0, 0, 0, 0, '', '{}', now(), NULL, NULL",
           (blocking_id,))
    anchor = path.with_name(path.name + ".anchor")
    with Ledger.open(path) as ledger:
        before = (ledger.last_entry_id, ledger.scalar("SELECT count(*) FROM accruals"), anchor.read_text())
        with pytest.raises(duckdb.ConstraintException):
            close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        after = (ledger.last_entry_id, ledger.scalar("SELECT count(*) FROM accruals"), anchor.read_text())
        assert after == before  # the rollback left the ledger's end alone
        assert ledger.get_close("2026-04") is None
        assert ledger.query("SELECT count(*) FROM accruals WHERE kind = 'pool_share'") == [(0,)]
    tamper(path, "DELETE FROM statements WHERE period = '0000-00'")  # undoes the tampering
    with Ledger.open(path) as ledger:
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        assert (ledger.statement_rows(period="2026-04"), documents(ledger, "2026-04"),
                ledger.get_close("2026-04").root) == expected
        assert ledger.scalar("SELECT count(*) FROM close_streams WHERE period = '2026-04'") == 2
        assert verify(ledger).ok


def in_force(ledger: Ledger) -> str:
    """DuckDB's buffer pool's memory limit, as DuckDB writes it (``current_setting`` shows the setting,
    which ``RESET`` changes without reaching the pool)."""
    return ledger.scalar("SELECT memory_limit FROM pragma_database_size() LIMIT 1")


def test_a_close_stores_the_golden_documents_under_its_memory_limit_and_restores_the_limit_before(book_ledger):
    """``close.memory_limit`` caps DuckDB while the statements are built and stored (the bytes are the
    same whatever the limit: past it DuckDB spills), and the limit the ledger had is back after."""
    book_ledger.limit_memory("1GB")
    during: list[str] = []

    class NotingSigner:
        """Signs as SIGNER does, noting DuckDB's memory limit as each statement is signed in the close."""

        fingerprint = SIGNER.fingerprint

        def sign(self, message: bytes) -> str:
            during.append(in_force(book_ledger))
            return SIGNER.sign(message)

    close_period(book_ledger, "2026-04", now=NOW, signer=NotingSigner(), memory_limit="16MB")
    assert during and set(during) == {"15.2 MiB"}  # DuckDB's spelling of 16MB
    assert in_force(book_ledger) == "953.6 MiB"  # 1GB, as before
    expected = {path.stem: path.read_text() for path in GOLDEN.glob("2026-04_*.json")}
    assert documents(book_ledger, "2026-04") == expected


def test_a_failed_close_restores_the_memory_limit_too(book_ledger):
    class FailingSigner:
        fingerprint = SIGNER.fingerprint

        def sign(self, message: bytes) -> str:
            raise RuntimeError("the signing key went away")

    book_ledger.limit_memory("64MB")  # as the consumer of `learnright serve` sets it
    with pytest.raises(RuntimeError, match="the signing key went away"):
        close_period(book_ledger, "2026-04", now=NOW, signer=FailingSigner(), memory_limit="16MB")
    assert in_force(book_ledger) == "61.0 MiB"  # 64MB
    assert book_ledger.get_close("2026-04") is None
