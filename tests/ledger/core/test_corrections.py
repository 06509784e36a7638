from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ledger.core.corrections import CorrectionError, apply_correction
from ledger.core.license_file import parse_book
from ledger.core.pricing import price
from ledger.core.usage import Attribution, InferenceUsage, TrainingUsage, UsageCorrection

WHEN = datetime(2026, 4, 2, tzinfo=timezone.utc)


@pytest.fixture
def book(license_book_text):
    return parse_book(license_book_text)


def correction(action, **fields):
    return UsageCorrection(event_id="c1", platform_id="p", corrects_event_id="e1", action=action,
                           occurred_at=datetime(2026, 5, 9, tzinfo=timezone.utc), **fields)


def booked_training(book, units=2_000_000):
    event = TrainingUsage(event_id="e1", platform_id="p", model_id="m", run_id="r", source_id="src-novels",
                          units=units, unit="tokens", occurred_at=WHEN)
    return tuple((f"t/0@10#{i}", a) for i, a in enumerate(price(event, book)))


def test_void_reverses_every_entry_in_the_original_period(book):
    (reversal,) = apply_correction(correction("VOID"), booked_training(book), book)
    assert (reversal.amount, reversal.quantity) == (Decimal("-2.4"), Decimal(-2_000_000))
    assert (reversal.reverses_entry_key, reversal.period, reversal.event_id) == ("t/0@10#0", "2026-04", "c1")
    assert (reversal.stream, reversal.position) == ("", 0)  # keyed by the correction's own record at ingest


def test_replace_reverses_and_reprices_at_the_original_time(book):
    reversal, replacement = apply_correction(correction("REPLACE", replacement_units=500_000), booked_training(book), book)
    assert reversal.amount + replacement.amount == Decimal("-1.8")  # 0.5M instead of 2M at 1.20 per 1M
    assert replacement.occurred_at == WHEN and replacement.reverses_entry_key is None and replacement.line == 1


def test_replace_of_an_inference_needs_attributions(book):
    event = InferenceUsage(event_id="e1", platform_id="p", model_id="m", request_id="q", occurred_at=WHEN,
                           attributions=(Attribution(source_id="src-novels", weight=Decimal("0.5")),))
    booked = tuple((f"t/0@1#{i}", a) for i, a in enumerate(price(event, book)))
    with pytest.raises(CorrectionError, match="inference event; REPLACE needs replacement_attributions"):
        apply_correction(correction("REPLACE", replacement_units=3), booked, book)
    entries = apply_correction(correction("REPLACE", replacement_attributions=(
        Attribution(source_id="src-photos", weight=Decimal("0.25")),)), booked, book)
    assert [(e.source_id, e.currency, e.amount) for e in entries] == [
        ("src-novels", "USD", Decimal("-0.0015")), ("src-photos", "JPY", Decimal("0.25"))]


def test_a_correction_of_a_correction_is_refused(book):
    """Reversing c1's entries would reverse its reversal and put the original back."""
    first = apply_correction(correction("REPLACE", replacement_units=500_000), booked_training(book), book)
    booked_correction = tuple((f"t/0@20#{i}", a) for i, a in enumerate(first))
    second = UsageCorrection(event_id="c2", platform_id="p", corrects_event_id="c1", action="REPLACE",
                             occurred_at=WHEN, replacement_units=700_000)
    with pytest.raises(CorrectionError, match="c1 is itself a correction; correct the original event instead"):
        apply_correction(second, booked_correction, book)
