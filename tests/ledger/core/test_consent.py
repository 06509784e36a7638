"""When consent ends: effective_to, revocations, and what pricing books after them (pure, no ledger)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ledger.core.license_file import parse_book
from ledger.core.licenses import merge_books
from ledger.core.pricing import price_consented
from ledger.core.usage import Attribution, InferenceUsage, TrainingUsage
from ledger.errors import LicenseFileError, NoLicenseError

BOOK = """
[[holders]]
id = "h"

[[sources]]
id = "s"
holder = "h"

[[sources]]
id = "t"
holder = "h"

[[licenses]]
id = "lic-s"
source = "s"
effective_from = 2026-01-01T00:00:00Z
effective_to = 2026-03-01T00:00:00Z
currency = "USD"
training = { rate = 1, per = 1, unit = "tokens" }
inference = { rate = 1 }

[[licenses]]
id = "lic-t"
source = "t"
effective_from = 2026-01-01T00:00:00Z
currency = "EUR"
training = { rate = 1, per = 1, unit = "tokens" }
inference = { rate = 1 }
"""

REVOKE_T = """
[[revocations]]
id = "rv-1"
source = "t"
platform = "orbit"
effective_at = 2026-02-15T00:00:00Z
recorded_at = 2026-02-01T00:00:00Z
reason = "withdrawn"
by = "holder:h"
"""


def at(month, day=1):
    return datetime(2026, month, day, 12, tzinfo=timezone.utc)


def train(source, when, platform="orbit"):
    return TrainingUsage(event_id="e", platform_id=platform, model_id="m", run_id="r", source_id=source, units=5,
                         unit="tokens", occurred_at=when)


def test_a_version_is_in_force_up_to_its_effective_to_and_unlicensed_after():
    book = parse_book(BOOK)
    assert price_consented(train("s", at(2, 28)), book).accruals[0].amount == 5
    after = price_consented(train("s", at(3, 1)), book)
    assert after.accruals == ()
    (use,) = after.unlicensed
    assert (use.reason, use.license_id, use.currency, use.quantity, use.period) == (
        "ended", "lic-s", "USD", Decimal(5), "2026-03")


def test_a_revocation_for_one_platform_leaves_the_others_licensed_and_a_later_version_is_new_consent():
    book = merge_books(parse_book(BOOK), parse_book(REVOKE_T))
    assert price_consented(train("t", at(2, 14)), book).unlicensed == ()
    assert [u.revocation_id for u in price_consented(train("t", at(2, 16)), book).unlicensed] == ["rv-1"]
    assert price_consented(train("t", at(2, 16), platform="other"), book).unlicensed == ()
    renewed = merge_books(book, parse_book(BOOK.split("[[licenses]]")[0] + """
[[licenses]]
id = "lic-t"
version = 2
source = "t"
effective_from = 2026-04-01T00:00:00Z
currency = "EUR"
training = { rate = 2, per = 1, unit = "tokens" }
"""))
    assert price_consented(train("t", at(3)), renewed).unlicensed != ()
    assert price_consented(train("t", at(4, 2)), renewed).accruals[0].amount == 10


def test_an_answer_prices_its_licensed_sources_and_lists_the_revoked_one_under_its_own_line():
    book = merge_books(parse_book(BOOK), parse_book(REVOKE_T))
    answer = InferenceUsage(event_id="q", platform_id="orbit", model_id="m", request_id="q", occurred_at=at(3),
                            attributions=(Attribution(source_id="t", weight=Decimal("0.25")),
                                          Attribution(source_id="s", weight=Decimal("0.75"))))
    priced = price_consented(answer, book)
    assert [(u.line, u.source_id, u.reason) for u in priced.unlicensed] == [(0, "t", "revoked"), (1, "s", "ended")]
    assert priced.accruals == ()


def test_a_source_never_licensed_is_still_refused_not_booked_as_unlicensed():
    book = parse_book(BOOK)
    with pytest.raises(NoLicenseError):
        price_consented(train("s", datetime(2025, 12, 1, tzinfo=timezone.utc)), book)


@pytest.mark.parametrize("change, message", [
    ('effective_at = 2026-02-15T00:00:00Z', "effective_at must be a TOML offset date-time"),
    ('reason = "withdrawn"', "reason must be a non-empty string"),
    ('by = "holder:h"', "by must be a non-empty string"),
])
def test_a_revocation_missing_a_field_names_it(change, message):
    with pytest.raises(LicenseFileError, match=message):
        parse_book(REVOKE_T.replace(change, ""), "rv.toml")


def test_revocation_evidence_and_an_unknown_source_are_checked():
    with pytest.raises(LicenseFileError, match="evidence_sha256 must be 64 lower-case hex"):
        parse_book(REVOKE_T + 'evidence_url = "https://x.example/a"\nevidence_sha256 = "ABC"\n')
    with pytest.raises(LicenseFileError, match="source 'nope' is not declared"):
        merge_books(parse_book(BOOK), parse_book(REVOKE_T.replace('source = "t"', 'source = "nope"')))
    with pytest.raises(LicenseFileError, match="effective_to must be after effective_from"):
        parse_book(BOOK.replace("effective_to = 2026-03-01", "effective_to = 2025-03-01"))
