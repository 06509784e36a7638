"""File names from ids: ordinary ids unchanged, hostile ones encoded, one name per id, bounded length."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.filenames import (MAX_NAME, MAX_PART, check_distinct, name_part, statement_file_name,
                                   usage_report_name)
from ledger.errors import FileNameClashError

SAFE_NAME = re.compile(r"[A-Za-z0-9._%~-]+")
ids = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["acme.one", "acme.two", "a/b", "../x", ".", "..", ".hidden", "%2F", "/", "50%", "a_b", "x" * 200])


def decode(part: str) -> str:
    """The inverse of name_part for parts that were not cut (the test's proof of injectivity)."""
    return unquote_to_bytes(part).decode("utf-8", "surrogatepass")


def test_ordinary_ids_keep_the_names_golden_files_and_tests_rely_on():
    assert statement_file_name("2026-04", "h-ann", "USD", "json") == "2026-04_h-ann_USD.json"
    assert usage_report_name("2026-04", "orbit") == "2026-04_orbit.dsr.tsv"
    assert usage_report_name("2026-04", "orbit.dsr") == "2026-04_orbit.dsr.dsr.tsv"


def test_a_dot_in_an_id_is_kept_and_never_cuts_the_name():
    """Path.with_suffix made both of these 2026-10_acme.json."""
    assert statement_file_name("2026-10", "acme.one", "USD", "json") == "2026-10_acme.one_USD.json"
    assert statement_file_name("2026-10", "acme.two", "USD", "json") == "2026-10_acme.two_USD.json"


@pytest.mark.parametrize(("value", "encoded"), [
    ("a/b", "a%2Fb"), ("../etc/passwd", "%2E.%2Fetc%2Fpasswd"), (".hidden", "%2Ehidden"), ("50%", "50%25"),
    ("%2F", "%252F"), ("a b", "a%20b"), ("é", "%C3%A9"), ("tab\there", "tab%09here"), ("a~b", "a%7Eb"),
    ("CON", "CON"), ("", ""),
])
def test_every_other_byte_is_percent_encoded(value, encoded):
    assert name_part(value) == encoded
    assert decode(encoded) == value


def test_the_period_and_currency_have_their_underscore_encoded_so_the_name_splits_one_way():
    # Without it, holder "a_b" in "USD" and holder "a" in "b_USD" would share one name.
    assert statement_file_name("2026-04", "a_b", "USD", "csv") != statement_file_name("2026-04", "a", "b_USD", "csv")
    assert statement_file_name("2026-04", "a", "b_USD", "csv") == "2026-04_a_b%5FUSD.csv"


def test_a_long_id_is_cut_with_a_hash_and_two_long_ids_with_one_beginning_stay_apart():
    first, second = "h" * 300 + "-one", "h" * 300 + "-two"
    assert name_part(first) != name_part(second)
    assert re.fullmatch(r"h{47}~[0-9a-f]{16}", name_part(first))
    name = statement_file_name("2026-04", "/" * 500, "%" * 500, "json")
    assert len(name) <= MAX_NAME and SAFE_NAME.fullmatch(name)
    assert len(usage_report_name("2026-04", "é" * 1000)) <= MAX_NAME


@settings(max_examples=400)
@given(ids, ids)
def test_distinct_ids_never_share_a_name_part(a, b):
    if a != b:
        assert name_part(a) != name_part(b)


@settings(max_examples=400)
@given(ids)
def test_a_part_is_safe_bounded_and_whole_ones_decode_back(value):
    part = name_part(value)
    assert len(part) <= MAX_PART
    assert part == "" or SAFE_NAME.fullmatch(part)
    assert not part.startswith(".") and "/" not in part
    if "~" not in part:
        assert decode(part) == value


@settings(max_examples=300)
@given(st.tuples(ids, ids), st.tuples(ids, ids))
def test_statement_names_are_injective_in_holder_and_currency(one, other):
    if one != other:
        assert statement_file_name("2026-04", *one, "json") != statement_file_name("2026-04", *other, "json")


def test_names_equal_or_equal_but_for_case_are_refused_naming_both():
    check_distinct([("2026-04_a_USD.json", "statement of 'a'"), ("2026-04_b_USD.json", "statement of 'b'")])
    with pytest.raises(FileNameClashError, match=r"statement of 'Acme' and statement of 'acme' would be written"
                                                 r" under names that differ only in case"):
        check_distinct([("2026-04_Acme_USD.json", "statement of 'Acme'"),
                        ("2026-04_acme_USD.json", "statement of 'acme'")])
    with pytest.raises(FileNameClashError, match="under the same name: x.json; nothing was written"):
        check_distinct([("x.json", "one"), ("x.json", "two")])
