import re
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from ledger.errors import LicenseFileError
from ledger.core.license_file import parse_book
from ledger.core.licenses import merge_books


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc)


def test_version_in_force_follows_effective_from(license_book_text):
    book = parse_book(license_book_text)
    assert book.in_force("src-novels", "any", at("2026-03-14T23:59:59")).version == 1
    assert book.in_force("src-novels", "any", at("2026-03-15T00:00:00")).version == 2
    assert book.in_force("src-novels", "any", at("2025-12-31T23:59:59")) is None
    assert book.in_force("src-novels", "any", at("2026-04-01T00:00:00")).training.unit_price == Decimal("0.0000012")


def test_platform_specific_license_wins_over_any_platform(license_book_text):
    extra = license_book_text + """
[[licenses]]
id = "lic-novels-orbit"
source = "src-novels"
platform = "orbit"
effective_from = 2026-02-01T00:00:00Z
currency = "USD"
inference = { rate = 0.01 }
"""
    book = parse_book(extra)
    assert book.in_force("src-novels", "orbit", at("2026-02-02T00:00:00")).license_id == "lic-novels-orbit"
    assert book.in_force("src-novels", "nimbus", at("2026-02-02T00:00:00")).license_id == "lic-novels"


@pytest.mark.parametrize("change, message", [
    ('effective_from = 2026-01-01T00:00:00Z', "licenses[lic-novels v1].effective_from"),
    ('currency = "USD"', "licenses[lic-novels v1].currency is not an ISO 4217"),
    ('per = 1000000', "licenses[lic-novels v1].training.per must be an integer > 0"),
    ("rate = 0.80", "licenses[lic-novels v1].training.rate must be below 10"),
])
def test_bad_license_files_name_the_entry_and_field(license_book_text, change, message):
    broken = {
        'effective_from = 2026-01-01T00:00:00Z': 'effective_from = 2026-01-01T00:00:00',
        'currency = "USD"': 'currency = "USX"',
        'per = 1000000': 'per = 0',
        'rate = 0.80': 'rate = 100000000000000000000000000',
    }[change]
    with pytest.raises(LicenseFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_book(license_book_text.replace(change, broken, 1))


def test_a_version_is_never_edited(license_book_text):
    book = parse_book(license_book_text)
    changed = parse_book(license_book_text.replace("rate = 0.80", "rate = 0.90"))
    with pytest.raises(LicenseFileError, match="lic-novels version 1 already exists with other terms"):
        merge_books(book, changed)
    assert merge_books(book, parse_book(license_book_text)).versions == book.versions


@pytest.mark.parametrize("change, broken, message", [
    ('training = { rate = 0.80, per = 1000000, unit = "tokens" }', "training = 5",
     "licenses[lic-novels v1].training must be a table, e.g. { rate = 0.0025 } (got 5)"),
    ("inference = { rate = 0.002 }", 'inference = "cheap"',
     "licenses[lic-novels v1].inference must be a table"),
    ('currency = "USD"', 'currency = "USD"\nplatform = ""', "licenses[lic-novels v1].platform must be a platform id"),
    ('currency = "USD"', 'currency = "USD"\nplatform = 7', "licenses[lic-novels v1].platform must be a platform id"),
])
def test_terms_that_are_not_tables_and_empty_platforms_are_license_file_errors(license_book_text, change, broken,
                                                                               message):
    """Before, ``training = 5`` crashed the parser with AttributeError instead of naming the field."""
    with pytest.raises(LicenseFileError, match=re.escape(message)):
        parse_book(license_book_text.replace(change, broken, 1))
