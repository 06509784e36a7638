"""Period terms as pure functions, the license syntax that declares them, and late revenue."""

from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction

import pytest

from ledger.services.close import close_period
from ledger.errors import LicenseFileError
from ledger.core.license_file import parse_book
from ledger.core.period_terms import ModelTraining, UsageTotal, dataset_shares, period_lines, term_sources
from ledger.core.records import IngestBatch
from ledger.storage.store import Ledger
from ledger.core.usage import RevenueReport
from tests.ledger.keys import SIGNER
from tests.ledger.services.test_golden_book import BOOK, NOW, ingest


def usage(source, kind, quantity, amount, version=1, period="2026-04", platform="orbit"):
    license_id = {"src-novels": "lic-novels", "src-manga": "lic-manga", "src-essays": "lic-essays"}[source]
    currency = {"src-novels": "USD", "src-manga": "JPY", "src-essays": "EUR"}[source]
    unit = {"training": {"src-novels": "tokens", "src-manga": "pages", "src-essays": "words"}[source],
            "inference": "answer"}[kind]
    return UsageTotal(period=period, platform_id=platform, source_id=source, kind=kind, license_id=license_id,
                      license_version=version, currency=currency, unit=unit, quantity=Decimal(quantity),
                      amount=Decimal(amount))


def report(event_id="r1", revenue="100.00", period="2026-04", model="m"):
    return RevenueReport(event_id=event_id, platform_id="orbit", model_id=model, period=period,
                         revenue=Decimal(revenue), currency="USD", occurred_at=NOW)


def test_tiers_cross_a_band_within_one_version():
    book = parse_book(BOOK)
    # 3M tokens under v1 (before 04-16): 1M at 1.00 + 2M at 0.50 = 2.00; accrued 3.00.
    lines = period_lines(period="2026-04", book=book, usage=[usage("src-novels", "training", 3_000_000, "3")],
                         training=(), revenues=(), lineage={})
    (line,) = [l for l in lines if l.kind == "tier_adjustment"]
    assert (line.kind, line.amount, line.license_version) == ("tier_adjustment", Decimal("-1"), 1)


def test_no_minimum_top_up_when_the_month_earns_enough():
    book = parse_book(BOOK)
    lines = period_lines(period="2026-04", book=book, usage=[usage("src-essays", "training", 50_000, "25")],
                         training=(), revenues=(), lineage={})
    assert [l.kind for l in lines] == []
    # With no usage at all the guarantee still pays the whole minimum.
    (topup,) = period_lines(period="2026-04", book=book, usage=(), training=(), revenues=(), lineage={})
    assert (topup.source_id, topup.currency, topup.amount) == ("src-essays", "EUR", Decimal(20))


def test_pool_splits_exactly_and_pays_nobody_without_weighted_use():
    book = parse_book(BOOK)
    weights = [usage("src-novels", "inference", "1", "0.002"), usage("src-manga", "inference", "2", "6")]
    pool = [l for l in period_lines(period="2026-04", book=book, usage=weights, training=(),
                                    revenues=[report(revenue="0.01")], lineage={}) if l.kind == "pool_share"]
    # 5% of 0.01 = 0.0005, in thirds at 1e-12: the spare unit goes to the largest remainder.
    assert [(l.source_id, l.amount) for l in pool] == [
        ("src-manga", Decimal("0.000333333333")), ("src-novels", Decimal("0.000166666667"))]
    assert sum(l.amount for l in pool) == Decimal("0.0005")
    lines = period_lines(period="2026-04", book=book, usage=(), training=(), revenues=[report()], lineage={})
    assert [l for l in lines if l.kind == "pool_share"] == []


def test_fine_tune_shares_mix_own_and_base_and_survive_a_lineage_loop():
    training = [
        ModelTraining(platform_id="orbit", model_id="base", source_id="a", period="2026-03", units=Decimal(3)),
        ModelTraining(platform_id="orbit", model_id="base", source_id="b", period="2026-04", units=Decimal(1)),
        ModelTraining(platform_id="orbit", model_id="ft", source_id="c", period="2026-04", units=Decimal(5)),
        ModelTraining(platform_id="orbit", model_id="base", source_id="a", period="2026-05", units=Decimal(100)),
    ]
    shares = dataset_shares(platform_id="orbit", model_id="ft", through="2026-04", training=training,
                            lineage={("orbit", "ft"): "base", ("orbit", "base"): "ft"}, inherit=Fraction(1, 5))
    # own c = 1; base (through April): a 3/4, b 1/4; share = 0.8 x own + 0.2 x base.
    assert shares == {"a": Fraction(3, 20), "b": Fraction(1, 20), "c": Fraction(4, 5)}


@pytest.mark.parametrize("change, message", [
    ("{ up_to = 1000000, rate = 1.00 },", r"tiers\[0\].rate must equal training.rate"),
    ("{ rate = 0.50 },", r"tiers\[1\].up_to must be an integer above"),
    ('platform = "orbit"\neffective_from = 2026-01-01T00:00:00Z\ncurrency = "EUR"', r"minimum needs a license for one platform"),
    ("pool = { percent = 5 }", r"pool.percent must be at most 100"),
    ("inherit = 0.5", r"inherit must be in \[0, 1\]"),
])
def test_bad_period_terms_name_the_entry_and_field(change, message):
    broken = {
        "{ up_to = 1000000, rate = 1.00 },": "{ up_to = 1000000, rate = 1.10 },",
        "{ rate = 0.50 },": "{ up_to = 10, rate = 0.50 },\n  { rate = 0.25 },",
        'platform = "orbit"\neffective_from = 2026-01-01T00:00:00Z\ncurrency = "EUR"':
            'platform = "*"\neffective_from = 2026-01-01T00:00:00Z\ncurrency = "EUR"',
        "pool = { percent = 5 }": "pool = { percent = 120 }",
        "inherit = 0.5": "inherit = 1.5",
    }[change]
    with pytest.raises(LicenseFileError, match=message):
        parse_book(BOOK.replace(change, broken, 1))


def test_period_terms_do_not_change_the_hash_of_a_plain_license(license_book_text):
    plain = parse_book(license_book_text)
    assert plain.versions[0].content_hash == parse_book(license_book_text + "\n").versions[0].content_hash
    assert "tiers" not in plain.versions[0].terms["training"] and "pool" not in plain.versions[0].terms


def test_revenue_reported_after_its_month_closed_is_settled_next_month_as_prior_period(tmp_path):
    with Ledger.open(tmp_path / "l.duckdb") as ledger:
        ledger.apply_licenses(BOOK, "book.toml")
        ingest(ledger)
        close_period(ledger, "2026-04", now=NOW, signer=SIGNER)
        late = report(event_id="r-late", revenue="200.00", model="orbit-base")
        ledger.append_batch(IngestBatch(revenues=((late, 99),), offsets={("usage", 0): 100}))
        close_period(ledger, "2026-05", now=datetime(2026, 6, 1, tzinfo=timezone.utc), signer=SIGNER)
        again = close_period(ledger, "2026-05", now=datetime(2026, 6, 1, tzinfo=timezone.utc), signer=SIGNER)
        assert again.already_closed
        rows = ledger.query(
            "SELECT kind, period, source_id, amount FROM accruals WHERE event_id LIKE 'close:2026-05:%' ORDER BY ALL")
        # 5% pool of 200 by April weights (1.1 : 1.4) and 10% royalty by orbit-base's April dataset (0.75 : 0.25).
        assert rows == [
            ("minimum_topup", "2026-05", "src-essays", Decimal("20")),  # no May usage: the whole minimum
            ("model_royalty", "2026-04", "src-novels", Decimal("15")),
            ("model_royalty", "2026-04", "src-poems", Decimal("5")),
            ("pool_share", "2026-04", "src-manga", Decimal("5.6")),
            ("pool_share", "2026-04", "src-novels", Decimal("4.4")),
        ]
        may = {(row.holder_id, row.currency): row.accrued for row in ledger.statement_rows(period="2026-05")}
        assert may[("h-ann", "USD")] == Decimal("19.4")  # 15 + 4.4, as prior-period lines
        assert may[("h-ann", "EUR")] == Decimal("20")  # May's minimum top-up, no May usage


def poems(kind, quantity, amount):
    return UsageTotal(period="2026-04", platform_id="orbit", source_id="src-poems", kind=kind, license_id="lic-poems",
                      license_version=1, currency="BHD", unit="tokens" if kind == "training" else "answer",
                      quantity=Decimal(quantity), amount=Decimal(amount))


@pytest.mark.parametrize("revenues", [(), (report(revenue="0.01"),)])
def test_usage_of_the_term_sources_alone_gives_the_same_period_lines(revenues):
    book = parse_book(BOOK)
    every = [usage("src-novels", "training", 3_000_000, "3"), usage("src-novels", "inference", "1", "0.002"),
             usage("src-manga", "training", 5, "10"), usage("src-manga", "inference", "2", "6"),
             usage("src-essays", "training", 10_000, "5"), poems("training", 500_000, "5"),
             poems("inference", "3", "0.0375")]
    sources = term_sources(book, revenues=bool(revenues))
    # Tiers (novels), a minimum (essays), and the pool (novels, manga) only when revenue is reported.
    assert sources == ({"src-novels", "src-essays", "src-manga"} if revenues else {"src-novels", "src-essays"})
    lines = period_lines(period="2026-04", book=book, usage=every, training=(), revenues=revenues, lineage={})
    assert {line.kind for line in lines} == ({"tier_adjustment", "minimum_topup", "pool_share"} if revenues
                                             else {"tier_adjustment", "minimum_topup"})
    assert period_lines(period="2026-04", book=book, usage=[t for t in every if t.source_id in sources], training=(),
                        revenues=revenues, lineage={}) == lines
