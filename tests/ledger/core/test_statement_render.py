"""A stored statement document is ``json.dumps(indent=2, sort_keys=True)`` byte for byte, however it is rendered.

:func:`ledger.core.statements.render_document` renders through ``json``'s C encoder for
speed (issue 18); these tests hold it to the pure-Python output it replaced, on the golden
statements and on any JSON-shaped document, strings with quotes, newlines, braces and
non-ASCII included.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from ledger.core.statements import render_document

GOLDEN = Path(__file__).parents[1] / "golden"


def reference(document: object) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("20*.json")), ids=lambda p: p.name)
def test_golden_statements_render_to_their_stored_bytes(path):
    assert render_document(json.loads(path.read_bytes())) == path.read_bytes()


def test_a_string_that_looks_like_the_boundary_between_two_lines_stays_a_string():
    lines = [{"description": "},\n      {", "amount": "1"}, {"description": '"}, {"', "amount": "2"}]
    document = {"lines": lines, "empty": [], "none": {}, "holder": {"name": "Ünïcode \u2028"}}
    assert render_document(document) == reference(document)


SCALARS = st.one_of(st.text(), st.integers(), st.booleans(), st.none())
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), DOCUMENTS, max_size=5))
def test_any_document_renders_as_json_dumps_with_indent_does(document):
    assert render_document(document) == reference(document)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=6), SCALARS, min_size=1, max_size=5), max_size=5))
def test_lists_of_flat_objects_render_as_json_dumps_with_indent_does(lines):
    document = {"lines": lines}
    assert render_document(document) == reference(document)


def canonical_reference(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def both(document: dict) -> tuple[bytes, bytes]:
    from ledger.core.statements import canonical_bytes

    pair = (canonical_bytes(document), render_document(document))
    assert pair == (canonical_reference(document), reference(document))
    return pair


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("20*.json")), ids=lambda p: p.name)
def test_golden_statements_render_both_ways_at_once_to_their_stored_and_signed_bytes(path):
    from ledger.core.statements import rendered

    document = json.loads(path.read_bytes())
    assert rendered(document) == both(document) and rendered(document)[1] == path.read_bytes()


# Strings a one-pass rendering could take for structure: separators, markers, escapes, DEL, non-ASCII.
TRICKY = st.text(alphabet=st.sampled_from(['"', "\\", ",", ":", " ", "{", "}", "[", "]", "\n", "\x00", "\x01",
                                           "\x7f", "a", "é", "\u2028", "😀"]), max_size=8)
TRICKY_SCALARS = st.one_of(st.text(), TRICKY, st.integers(), st.booleans(), st.none())
TRICKY_DOCUMENTS = st.recursive(
    TRICKY_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.one_of(st.text(max_size=6), TRICKY), inner,
                                                                max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.one_of(st.text(max_size=6), TRICKY), TRICKY_DOCUMENTS, max_size=5))
def test_any_document_renders_both_ways_at_once_as_json_writes_each(document):
    from ledger.core.statements import rendered

    assert rendered(document) == both(document)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.one_of(st.text(max_size=6), TRICKY), TRICKY_SCALARS, min_size=1, max_size=5),
                max_size=5),
       st.dictionaries(st.sampled_from(["accrued", "payable", "carry_in"]), TRICKY, max_size=3))
def test_statement_shaped_documents_render_both_ways_at_once_as_json_writes_each(lines, summary):
    from ledger.core.statements import rendered

    document = {"format_version": 5, "lines": lines, "summary": summary, "holder": {"id": "h", "name": "Ann"},
                "by_source": {}, "ledger": {"close_root": "ab" * 32}}
    assert rendered(document) == both(document)


# Statements as a close builds them, with strings that could break a template: the shortcut must write
# what the generic rendering of their document writes, or fall back to it.
AMOUNTS = st.decimals(allow_nan=False, allow_infinity=False, places=12, min_value=-10**6, max_value=10**6)
LINE_TEXT = st.one_of(st.sampled_from(["", "src-1", "2026-10", "2026-09", "answer"]), TRICKY, st.text(max_size=6))


@st.composite
def statements(draw):
    from ledger.core.statements import StatementLine, build_statement

    period = draw(st.sampled_from(["2026-10", "2026-11"]))
    lines = draw(st.lists(st.builds(
        StatementLine, period=st.sampled_from([period, "2026-09"]), source_id=LINE_TEXT, platform_id=LINE_TEXT,
        model_id=LINE_TEXT, kind=LINE_TEXT, unit=LINE_TEXT, quantity=AMOUNTS, rate=AMOUNTS,
        per=st.integers(1, 1000), amount=AMOUNTS, entries=st.integers(0, 10**6), license_id=LINE_TEXT,
        license_version=st.integers(1, 9), description=LINE_TEXT), max_size=6))
    return build_statement(period=period, holder_id=draw(LINE_TEXT), holder_name=draw(LINE_TEXT),
                           currency=draw(st.sampled_from(["USD", "EUR", "JPY"])), lines=lines,
                           carry_in=draw(AMOUNTS), payout_minimum=draw(AMOUNTS), close_root=draw(LINE_TEXT))


@settings(max_examples=300, deadline=None)
@given(statements())
def test_a_statement_renders_straight_to_the_bytes_of_its_document(statement):
    from ledger.core.statements import statement_renderings, to_document

    assert statement_renderings(statement) == both(to_document(statement))


def test_a_statement_with_a_line_value_json_writes_as_null_renders_as_its_document():
    from ledger.core.statements import StatementLine, build_statement, statement_renderings, to_document

    line = StatementLine(period="2026-10", source_id="s", platform_id="p", model_id=None, kind="training",
                         unit="run", quantity=Decimal(1), rate=Decimal("0.5"), per=1, amount=Decimal("0.5"), entries=1,
                         license_id="l", license_version=1)
    statement = build_statement(period="2026-10", holder_id="h", holder_name="Ann", currency="USD", lines=[line],
                                carry_in=Decimal(0), payout_minimum=Decimal(0), close_root="ab" * 32)
    assert statement_renderings(statement) == both(to_document(statement))
