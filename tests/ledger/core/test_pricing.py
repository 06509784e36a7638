from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ledger.errors import NoLicenseError, PricingError, UnknownSourceError
from ledger.core.license_file import parse_book
from ledger.core.pricing import price
from ledger.core.usage import Attribution, InferenceUsage, TrainingUsage

MARCH_1 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
MARCH_20 = datetime(2026, 3, 20, tzinfo=timezone.utc)


def training(units: int, when: datetime, source: str = "src-novels", unit: str = "tokens") -> TrainingUsage:
    return TrainingUsage(event_id="e1", platform_id="p", model_id="m", run_id="r", source_id=source,
                         units=units, unit=unit, occurred_at=when)


@pytest.fixture
def book(license_book_text):
    return parse_book(license_book_text)


def test_training_is_units_times_rate_over_per_by_the_version_in_force(book):
    # 2.1M tokens at 0.80 per 1M before the change, 1.20 per 1M after it.
    (before,) = price(training(2_100_000, MARCH_1), book)
    (after,) = price(training(2_100_000, MARCH_20), book)
    assert before.amount == Decimal("1.68") and before.license_version == 1
    assert after.amount == Decimal("2.52") and after.license_version == 2
    assert before.period == "2026-03" and before.holder_id == "h-ann"


def test_inference_is_rate_times_weight_per_source(book):
    event = InferenceUsage(event_id="e2", platform_id="p", model_id="m", request_id="q", occurred_at=MARCH_1,
                           attributions=(Attribution(source_id="src-novels", weight=Decimal("0.7")),
                                         Attribution(source_id="src-photos", weight=Decimal("0.3"))))
    novels, photos = price(event, book)
    assert (novels.amount, novels.currency) == (Decimal("0.0014"), "USD")
    assert (photos.amount, photos.currency, photos.holder_id) == (Decimal("0.3"), "JPY", "h-bo")


def test_unpriceable_events_say_why(book):
    with pytest.raises(UnknownSourceError, match="source 'src-x' is not in any applied license file"):
        price(training(1, MARCH_1, source="src-x"), book)
    with pytest.raises(NoLicenseError, match="in force at 2025-12-01"):
        price(training(1, datetime(2025, 12, 1, tzinfo=timezone.utc)), book)
    with pytest.raises(PricingError, match="unit 'bytes' .* prices 'tokens'"):
        price(training(1, MARCH_1, unit="bytes"), book)


def test_huge_quantities_are_priced_exactly_not_to_28_digits(license_book_text):
    text = license_book_text.replace('training = { rate = 5, per = 1, unit = "items" }',
                                     'training = { rate = 1.234567891234, per = 1, unit = "items" }')
    book = parse_book(text)
    (accrual,) = price(training(9_000_000_000_000_000_001, MARCH_1, source="src-photos", unit="items"), book)
    assert accrual.amount == Decimal("11111111021106000001.234567891234")


def test_an_amount_beyond_what_the_ledger_holds_is_refused_not_truncated(license_book_text):
    text = license_book_text.replace('training = { rate = 5, per = 1, unit = "items" }',
                                     'training = { rate = 99999999999999, per = 1, unit = "items" }')
    book = parse_book(text)
    with pytest.raises(PricingError, match="beyond the 26 integer digits"):
        price(training(9_000_000_000_000_000_001, MARCH_1, source="src-photos", unit="items"), book)
