"""Plain TOML reads exactly what tomllib reads, or declines.

The corpus: every license document the project ships or tests with (examples/, the golden
books, the ``toml`` blocks of docs/, and every string in tests/ that holds an array-of-tables
header), the bench's generated 10,000-license book, and hypothesis-made documents in and
around the subset.
"""

from __future__ import annotations

import ast
import re
import tomllib
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ledger.core import plain_toml
from ledger.core.license_file import parse_book
from ledger.errors import LicenseFileError

ROOT = Path(__file__).resolve().parents[3]


def typed(value: object) -> object:
    """``value`` with every leaf as (type, repr): Decimal("0.50") and Decimal("0.5") are equal, their digits are not."""
    if isinstance(value, dict):
        return ("dict", tuple((key, typed(member)) for key, member in value.items()))
    if isinstance(value, list):
        return ("list", tuple(typed(member) for member in value))
    if isinstance(value, (datetime, date, time)):
        return (type(value).__name__, repr(value), repr(getattr(value, "tzinfo", None)))
    return (type(value).__name__, repr(value))


def tomllib_or_error(text: str) -> object:
    try:
        return typed(tomllib.loads(text, parse_float=Decimal))
    except tomllib.TOMLDecodeError:
        return "error"


def assert_same_or_declined(text: str) -> bool:
    """Plain TOML gives tomllib's data or None; True when it read the text itself."""
    fast = plain_toml.loads(text)
    if fast is None:
        return False
    assert typed(fast) == tomllib_or_error(text)
    return True


def shipped_documents() -> list[tuple[str, str]]:
    """(where, text) of every license document in the repository's examples, docs and tests."""
    found = [(str(path.relative_to(ROOT)), path.read_text()) for pattern in ("examples/**/*.toml", "tests/**/*.toml")
             for path in sorted(ROOT.glob(pattern))]
    for path in sorted((ROOT / "docs").glob("**/*.md")):
        for index, block in enumerate(re.findall(r"```toml\n(.*?)```", path.read_text(), re.S)):
            found.append((f"{path.relative_to(ROOT)} block {index}", block))
    for path in sorted((ROOT / "tests").glob("**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "[[" in node.value and "=" in node.value:
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.value))
    return found


DOCUMENTS = shipped_documents()


def test_the_corpus_is_the_projects_books():
    assert len(DOCUMENTS) > 20
    assert any(where.startswith("examples/") for where, _ in DOCUMENTS)


@pytest.mark.parametrize("where, text", DOCUMENTS, ids=[where for where, _ in DOCUMENTS])
def test_every_shipped_document_reads_as_tomllib_reads_it(where, text):
    assert_same_or_declined(text)


@pytest.mark.parametrize("where, text", DOCUMENTS, ids=[where for where, _ in DOCUMENTS])
def test_every_shipped_book_parses_to_the_same_book_either_way(where, text, monkeypatch):
    def book_or_error() -> object:
        try:
            return parse_book(text, where)
        except LicenseFileError as exc:
            return f"error: {exc}"

    fast = book_or_error()
    monkeypatch.setattr(plain_toml, "loads", lambda _: None)
    assert fast == book_or_error()


def test_the_bench_book_is_read_by_the_fast_path_and_gives_the_same_book(monkeypatch):
    from learnright.bench_close import synthetic_book

    text = synthetic_book(300)
    assert assert_same_or_declined(text)
    fast = parse_book(text)
    monkeypatch.setattr(plain_toml, "loads", lambda _: None)
    slow = parse_book(text)
    assert fast == slow
    assert [v.terms for v in fast.versions] == [v.terms for v in slow.versions]


@pytest.mark.parametrize("text", [
    'a = "x" # comment',  # comment after a value
    'a = "x\\ty"',  # escape
    "a = 'literal'",
    "[table]\na = 1",
    "a.b = 1",
    "a = 1\na = 2",  # a key given twice: tomllib's error
    "[[x]]\na = 1\na = 1",
    "x = 1\n[[x]]\na = 1",
    "a = 1e3",
    "a = 1_000",
    "a = 01",
    "a = +1",
    "a = 2026-02-30T00:00:00Z",  # no such day
    "a = 2026-01-01T00:00:00+01:00",
    "a = 2026-01-01 00:00:00Z",
    "a = { b = 1, }",
    "a = { b = 1, b = 2 }",
    "a = [1, 2",
    "a = [\n1]",
    'a = """x"""',
    "a = 1\r\nb = 2",
    "a = inf",
    "[[a.b]]\nc = 1",
])
def test_anything_outside_the_subset_is_declined(text):
    assert plain_toml.loads(text) is None


def test_what_it_reads():
    text = """format = 1
# a comment
  [[licenses]]
id = "lic-1"
version = 2
effective_from = 2026-01-01T00:00:00Z
training = { rate = 0.50, per = 1000000, unit = "tokens", tiers = 1 }
tiers = [{ up_to = 10, rate = 1.10 }, { rate = 0.9 }, ]
pool = true
empty = {}
list = [ "a", -0.0, 0 ]
"""
    assert assert_same_or_declined(text)
    read = plain_toml.loads(text)
    assert str(read["licenses"][0]["training"]["rate"]) == "0.50"


_KEYS = st.sampled_from(["id", "rate", "per", "unit", "a-b", "x_1", "tiers"])
_SCALARS = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), max_size=6).map(lambda s: '"' + s + '"'),
    st.integers(-10**20, 10**20).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.sampled_from(["true", "false", "2026-01-31T23:59:59Z", "2026-13-01T00:00:00Z", "1e3", "0x1f", "-0", "00",
                     "'x'", "nan", "2026-01-01T00:00:00.5Z"]),
)


@st.composite
def _values(draw) -> str:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(_SCALARS)
    items = draw(st.lists(st.tuples(_KEYS, _SCALARS), max_size=3))
    table = "{ " + ", ".join(f"{k} = {v}" for k, v in items) + (" }" if items else "}")
    if kind == 1:
        return table
    members = draw(st.lists(st.one_of(_SCALARS, st.just(table)), max_size=3))
    return "[" + ", ".join(members) + draw(st.sampled_from(["]", ", ]", ""]))


_LINES = st.one_of(
    st.tuples(_KEYS, _values()).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.sampled_from(["[[licenses]]", "[[holders]]", "[[id]]", "[table]", "# note", "", "  id = \"x\"  ", "a.b = 1",
                     "[[ licenses ]]", "id = \"x\" # trailing"]),
    st.text(max_size=8),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINES, max_size=12))
def test_generated_documents_read_as_tomllib_reads_them_or_are_declined(lines):
    assert_same_or_declined("\n".join(lines))
