"""The parsed form of a license document: it decodes to exactly what tomllib parsed, and makes the same book."""

from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from ledger.core.license_file import book_of, parse_book, read_document
from ledger.core.license_forms import FORM_VERSION, document_form, document_of_form
from ledger.errors import LicenseFileError
from tests.ledger.core import test_consent
from tests.ledger.services import test_collective_close, test_golden_book

ROOT = Path(__file__).resolve().parents[3]


def exactly(value):
    """``value`` with every type and exact text spelled out: Decimal("1.0") and Decimal("1.00") differ here."""
    if isinstance(value, dict):
        return ("table", [(key, exactly(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("array", [exactly(item) for item in value])
    return (type(value).__name__, repr(value))


def books(license_book_text):
    from learnright.bench_close import synthetic_book

    return [license_book_text, test_golden_book.BOOK, test_collective_close.BOOK, test_consent.BOOK,
            test_consent.BOOK + test_consent.REVOKE_T, (ROOT / "examples" / "licenses.toml").read_text(),
            synthetic_book(3)]


def test_every_book_of_the_tests_decodes_from_its_form_to_what_tomllib_parsed_and_makes_the_same_book(
        license_book_text):
    for text in books(license_book_text):
        form = document_form(read_document(text))
        assert form is not None
        decoded = document_of_form(form, FORM_VERSION, "book.toml")
        assert exactly(decoded) == exactly(read_document(text))
        assert book_of(decoded, "book.toml") == parse_book(text, "book.toml")
        assert document_form(read_document(text)) == form  # the same text, the same form


def test_floats_keep_their_exponent_and_instants_their_offset():
    text = ('rate = 0.00250\nbig = 1e3\nat = 2026-03-15T12:00:00.5+05:30\nlocal = 2026-03-15T12:00:00\n'
            'day = 2026-03-15\nclock = 07:32:00\n"$" = "dollar"\n[t]\n"$" = { v = 1.0 }\n')
    decoded = document_of_form(document_form(read_document(text)), FORM_VERSION, "x")
    assert exactly(decoded) == exactly(read_document(text))
    assert str(decoded["rate"]) == "0.00250" and str(decoded["big"]) == "1E+3"
    assert decoded["at"].utcoffset() == timedelta(hours=5, minutes=30) and decoded["local"].tzinfo is None
    assert decoded["t"] == {"$": {"v": Decimal("1.0")}}


def test_a_form_newer_than_this_learnright_is_refused_by_name():
    form = document_form(read_document("format = 1\n"))
    with pytest.raises(LicenseFileError, match=r"book.toml: its stored parsed form is version 2, written by a newer"
                                               r" Learnright; this one reads versions up to 1"):
        document_of_form(form, FORM_VERSION + 1, "book.toml")


@pytest.mark.parametrize("form", ['[1]', '{"a": {"$": "nope", "v": 1}}', '{"a": {"$": "decimal", "v": "x"}}', '{'])
def test_a_form_that_is_not_a_form_of_a_document_is_refused(form):
    with pytest.raises(LicenseFileError, match="book.toml: its stored parsed form"):
        document_of_form(form, FORM_VERSION, "book.toml")


offsets = st.one_of(st.none(), st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))))
scalars = st.one_of(
    st.text(), st.integers(-(2 ** 63), 2 ** 63 - 1), st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=True, places=None),
    st.builds(lambda at, tz: at.replace(tzinfo=tz, fold=0), st.datetimes(), offsets),
    st.dates(), st.times().map(lambda clock: clock.replace(fold=0)),  # tomllib sets no fold
)
keys = st.one_of(st.text(max_size=8), st.sampled_from(["$", "v", "decimal", "table"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


@given(st.dictionaries(keys, values, max_size=6))
def test_any_value_a_toml_parse_gives_decodes_from_its_form_exactly(document):
    """TOML's values as tomllib gives them (floats as decimals): tables, arrays, strings, integers, booleans,
    decimals, offset and local date-times, dates and times; tables with the form's own keys among them."""
    form = document_form(document)
    assert form is not None
    assert exactly(document_of_form(form, FORM_VERSION, "x")) == exactly(document)


def test_a_versions_content_hash_made_when_asked_is_the_hash_its_terms_had_when_read(license_book_text):
    """Versions keep neither their terms nor their hash: both are made from the fields when asked.
    Every version of these books (tiers, minimums, pools and ends included, which the golden and
    consent books hold) hashes to what it hashed to when the hash was made as the version was read
    (pinned from that code, 874cf0f3... over 36 versions)."""
    import hashlib

    versions = [v for text in books(license_book_text) for v in parse_book(text).versions]
    assert any(v.training and v.training.tiers for v in versions) and any(v.effective_to for v in versions)
    pinned = hashlib.sha256()
    for version in versions:
        pinned.update(f"{version.license_id} {version.version} {version.content_hash}\n".encode())
    assert (len(versions), pinned.hexdigest()) == (
        36, "874cf0f351690865bb6a0b29e234389ca644150d665ea0155cf068c33b7d88d1")
